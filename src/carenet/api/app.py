"""The FastAPI application: FHIR REST under /fhir, framing only.

Routes turn HTTP into a ``FhirRequest``, run ``fhir_rest.execute`` in one unit of work and turn
the ``FhirResponse`` back into HTTP. They hold no FHIR logic and check no permissions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from carenet import FHIR_VERSION, __version__
from carenet.access.actor import resolve_actor
from carenet.access.guard import GuardedRepository
from carenet.access.oauth_tokens import Principal
from carenet.api.audit_trail import OUTCOME_MINOR_FAILURE, OUTCOME_SERIOUS_FAILURE, Trail, Who
from carenet.api.fhir_rest import FhirRequest, FhirResponse, Prefer, execute, interaction_of
from carenet.api.operations import Services, registry
from carenet.audit import append_many
from carenet.config import Settings
from carenet.fhir import outcomes
from carenet.fhir.jsonparse import parse_json
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.preload import preload
from carenet.store.repository import Repository
from carenet.store.uow import Store, UnitOfWork

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
_FORMAT_OK = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


class FhirJSONResponse(Response):
    media_type = f"{FHIR_JSON}; charset=utf-8"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        pretty: bool = False,
    ) -> None:
        self.pretty = pretty
        super().__init__(content, status_code=status_code, headers=headers)

    def render(self, content: Any) -> bytes:
        if content is None:
            return b""
        return orjson.dumps(content, option=orjson.OPT_INDENT_2 if self.pretty else 0)


def outcome_response(err: OperationOutcomeError) -> FhirJSONResponse:
    return FhirJSONResponse(err.to_outcome(), status_code=err.status, headers=err.headers or None)


def _internal_error() -> FhirJSONResponse:
    incident = uuid.uuid4().hex
    log.exception("unexpected error", extra={"incident": incident})
    return outcome_response(
        OperationOutcomeError(
            500, [outcomes.Issue("fatal", "exception", f"Internal error; incident {incident}")]
        )
    )


class CareNetApp(FastAPI):
    """FastAPI, with FHIR requests handed straight to their one handler.

    Every request under /fhir ends in the same handler (``_handle``): the FastAPI routes
    declared for them serve the OpenAPI description, not the dispatch. Going through
    Starlette's middleware, FastAPI's route matching over every route of the portals and
    dependency solving cost about a third of the server's CPU for a small request such as a
    refused booking at release time (放号; py-spy, issue 4), so they are skipped here. The
    SMART configuration under /fhir/.well-known belongs to the auth router and goes the
    usual way."""

    fhir_handler: Callable[[Request, str, bytes], Response] | None = None
    # Threads running FHIR requests (CARENET_REQUEST_THREADS): a plain executor, cheaper per
    # request than anyio's thread hop.
    fhir_executor: ThreadPoolExecutor | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        handler = self.fhir_handler
        if handler is None or not (path == "/fhir" or path.startswith("/fhir/")):
            return await super().__call__(scope, receive, send)
        rest = path[len("/fhir/") :]
        if rest.startswith(".well-known/"):
            return await super().__call__(scope, receive, send)
        scope["app"] = self
        request = Request(scope, receive)
        try:
            body = await request.body()
            response = await asyncio.get_running_loop().run_in_executor(
                self.fhir_executor, handler, request, rest.strip("/"), body
            )
        except ClientDisconnect:
            return None  # the client went away before its body arrived: no one to answer
        except Exception:  # noqa: BLE001 - any bug is a 500 OperationOutcome, never a traceback
            response = _internal_error()
        await response(scope, receive, send)


def create_app(
    settings: Settings, store: Store, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """The app on a store; ``clock`` (aware datetimes) replaces the wall clock for the
    operations' rules (tests of release times and cut-offs)."""
    executor = ThreadPoolExecutor(max_workers=settings.request_threads, thread_name_prefix="fhir")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Before the first request, not inside it: at a release time right after a start, the
        # requests queued behind the first write of each process waited for these tables.
        await asyncio.get_running_loop().run_in_executor(executor, preload)
        # The domains' operations too: the first $book of a process imported the scheduling
        # domain (7% of a worker's CPU samples in the first release-time storm after a start).
        await asyncio.get_running_loop().run_in_executor(executor, registry)
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = CareNetApp(
        lifespan=lifespan,
        title="CareNet FHIR R4 API",
        version=__version__,
        description=(
            "CareNet 互联网+医疗健康 platform. FHIR R4 (4.0.1) REST API under /fhir: read, vread, "
            "create, update, patch, delete, conditional interactions, history, search, batch and "
            "transaction. The CapabilityStatement at /fhir/metadata states exactly what is supported."
        ),
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.store = store

    @app.exception_handler(OperationOutcomeError)
    async def _ooe(_: Request, exc: OperationOutcomeError) -> Response:
        return outcome_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _rve(_: Request, exc: RequestValidationError) -> Response:
        return outcome_response(outcomes.bad_request(f"Invalid request: {exc.errors()!r}"[:1000]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "processing"
        return outcome_response(
            OperationOutcomeError(exc.status_code, [outcomes.Issue("error", code, str(exc.detail))])
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return _internal_error()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "fhirVersion": FHIR_VERSION}

    from carenet.api.auth import bearer_principal
    from carenet.api.auth_router import create_auth_router
    from carenet.bootstrap import build_auth_context

    auth_ctx = build_auth_context(settings)
    # Before the FHIR routes: /fhir/{type}/{id} would otherwise capture
    # /fhir/.well-known/smart-configuration.
    app.include_router(
        create_auth_router(settings, store, auth_ctx, on_event=_audit_auth_event(settings))
    )

    def authenticate(request: Request, conn: Connection) -> Principal | None:
        return bearer_principal(request, conn, auth_ctx)

    services = Services(settings, auth_ctx.notifier, *([clock] if clock else []))

    def handle(request: Request, path: str, body: bytes) -> Response:
        return _handle(settings, store, request, path, body, authenticate, services)

    _register_fhir_routes(app, handle)
    app.fhir_handler = handle
    app.fhir_executor = executor
    return app


def _register_fhir_routes(app: FastAPI, handle: Any) -> None:
    """Explicit routes for readable OpenAPI docs. ``CareNetApp`` hands /fhir requests to the
    handler before routing reaches them; their bodies answer the same way if it ever does."""

    async def run(request: Request, path: str) -> Response:
        body = await request.body()
        return await run_in_threadpool(handle, request, path, body)

    tags: list[str | Enum] = ["FHIR R4"]

    @app.get("/fhir/metadata", tags=tags, summary="CapabilityStatement")
    async def metadata(request: Request) -> Response:
        return await run(request, "metadata")

    @app.api_route(
        "/fhir",
        methods=["GET", "POST"],
        tags=tags,
        summary="System search (GET) or batch/transaction Bundle (POST)",
    )
    async def base(request: Request) -> Response:
        return await run(request, "")

    @app.get("/fhir/_history", tags=tags, summary="System history")
    async def system_history(request: Request) -> Response:
        return await run(request, "_history")

    # Operations before the instance routes, which would otherwise capture Type/$op.
    @app.api_route(
        "/fhir/{resource_type}/${operation}",
        methods=["GET", "POST"],
        tags=["FHIR operations"],
        summary="Type-level operation (Appointment/$book); see the CapabilityStatement",
    )
    async def type_operation(request: Request, resource_type: str, operation: str) -> Response:
        return await run(request, f"{resource_type}/${operation}")

    @app.api_route(
        "/fhir/{resource_type}/{res_id}/${operation}",
        methods=["GET", "POST"],
        tags=["FHIR operations"],
        summary="Instance-level operation (Appointment/{id}/$cancel); see the CapabilityStatement",
    )
    async def instance_operation(
        request: Request, resource_type: str, res_id: str, operation: str
    ) -> Response:
        return await run(request, f"{resource_type}/{res_id}/${operation}")

    @app.api_route(
        "/fhir/{resource_type}",
        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        tags=tags,
        summary="Search (GET), create (POST), conditional update/delete/patch",
    )
    async def type_level(request: Request, resource_type: str) -> Response:
        return await run(request, resource_type)

    @app.api_route(
        "/fhir/{resource_type}/_search",
        methods=["GET", "POST"],
        tags=tags,
        summary="Search (POST with form body)",
    )
    async def type_search(request: Request, resource_type: str) -> Response:
        return await run(request, f"{resource_type}/_search")

    @app.get("/fhir/{resource_type}/_history", tags=tags, summary="Type history")
    async def type_history(request: Request, resource_type: str) -> Response:
        return await run(request, f"{resource_type}/_history")

    @app.api_route(
        "/fhir/{resource_type}/{res_id}",
        methods=["GET", "PUT", "DELETE", "PATCH"],
        tags=tags,
        summary="Read, update, delete, patch",
    )
    async def instance(request: Request, resource_type: str, res_id: str) -> Response:
        return await run(request, f"{resource_type}/{res_id}")

    @app.get("/fhir/{resource_type}/{res_id}/_history", tags=tags, summary="Instance history")
    async def instance_history(request: Request, resource_type: str, res_id: str) -> Response:
        return await run(request, f"{resource_type}/{res_id}/_history")

    @app.get(
        "/fhir/{resource_type}/{res_id}/_history/{vid}", tags=tags, summary="Version read (vread)"
    )
    async def vread(request: Request, resource_type: str, res_id: str, vid: str) -> Response:
        return await run(request, f"{resource_type}/{res_id}/_history/{vid}")


def _negotiate(request: Request, params: list[tuple[str, str]]) -> None:
    fmt = next((v for k, v in params if k == "_format"), None)
    if fmt is not None and fmt.split(";")[0].strip().lower() not in _FORMAT_OK:
        raise outcomes.not_acceptable(
            f"_format {fmt!r} is not supported; this server speaks application/fhir+json"
        )
    accept = request.headers.get("accept")
    if accept and fmt is None:
        types = [a.split(";")[0].strip().lower() for a in accept.split(",")]
        if not any(t in _JSON_TYPES or t in ("*/*", "application/*") for t in types):
            raise outcomes.not_acceptable(
                f"Accept {accept!r} is not supported; this server speaks application/fhir+json"
            )


def _parse_body(
    request: Request, method: str, path: str, body: bytes, settings: Settings
) -> tuple[Any, str | None]:
    if method not in ("POST", "PUT", "PATCH"):
        return None, None
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if len(body) > settings.max_body_bytes:
        raise OperationOutcomeError(
            413,
            [
                outcomes.Issue(
                    "error", "too-costly", f"Request body over {settings.max_body_bytes} bytes"
                )
            ],
        )
    if method == "POST" and path.endswith("_search"):
        if ctype not in ("", "application/x-www-form-urlencoded"):
            raise outcomes.unsupported_media_type(
                f"POST _search takes application/x-www-form-urlencoded, not {ctype!r}"
            )
        try:
            return parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            ), ctype
        except UnicodeDecodeError as exc:
            raise outcomes.bad_request("The form body is not UTF-8") from exc
    allowed = _JSON_TYPES | ({"application/json-patch+json"} if method == "PATCH" else set())
    if ctype and ctype not in allowed:
        raise outcomes.unsupported_media_type(
            f"Content-Type {ctype!r} is not supported; send application/fhir+json"
        )
    if not body.strip():
        raise outcomes.bad_request("The request body is empty", code="required")
    return parse_json(body), ctype or None


def _handle(
    settings: Settings,
    store: Store,
    request: Request,
    path: str,
    body: bytes,
    authenticate: Any = None,
    services: Services | None = None,
) -> Response:
    params = parse_qsl(request.url.query, keep_blank_values=True)
    pretty = any(k == "_pretty" and v == "true" for k, v in params)
    trail: Trail | None = None
    parsed: Any = None
    try:
        _negotiate(request, params)
        method = request.method.upper()
        parsed, ctype = _parse_body(request, method, path, body, settings)
        source = request.client.host if request.client else None
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        trail = Trail(Who(source_address=source, request_id=request_id))
        req = FhirRequest(
            trail=trail,
            acting_organization=request.headers.get("x-acting-organization"),
            # Percent-encoded UTF-8, since HTTP header values are ASCII (the reason is Chinese).
            break_glass=unquote(request.headers.get("x-break-glass-reason") or "") or None,
            method=method,
            path=path,
            params=params,
            body=parsed,
            if_match=request.headers.get("if-match"),
            if_none_exist=request.headers.get("if-none-exist"),
            if_none_match=request.headers.get("if-none-match"),
            prefer=Prefer.parse(request.headers.get("prefer")),
            base=settings.fhir_base,
            content_type=ctype,
            services=services,
        )
        identify = None if authenticate is None else lambda conn: authenticate(request, conn)
        resp = _run(store, req, settings.audit_chains, identify)
    except OperationOutcomeError as err:
        if trail is None or not trail.refusal_recorded:
            _record_refusal(store, request, path, params, err, settings.audit_chains, trail, parsed)
        return outcome_response(err)
    return FhirJSONResponse(resp.body, status_code=resp.status, headers=resp.headers, pretty=pretty)


def _run(
    store: Store,
    req: FhirRequest,
    chains: int,
    identify: Callable[[Connection], Principal | None] | None = None,
) -> FhirResponse:
    """Run a request in one unit of work. ``identify`` reads the bearer token's Principal on
    the unit of work's own connection (a refused token is audited like any refusal)."""
    attempts = 3
    for attempt in range(attempts):
        assert req.trail is not None
        req.trail.records.clear()
        committing = False
        try:
            with store.unit_of_work() as uow:
                try:
                    resp = _execute_as_actor(uow, req, identify)
                except OperationOutcomeError as err:
                    # Refused before writing anything (a full slot at release time, a bad
                    # token, a search the actor may not run): the refusal's audit event is
                    # committed in this same transaction, saving a second one per refusal.
                    # Otherwise (or if that fails) the transaction is rolled back and _handle
                    # audits the refusal in a transaction of its own.
                    if not uow.changed():
                        req.trail.refusal_recorded = _commit_refusal(uow, req, err, chains)
                    raise
                uow.repo.flush()
                # Last, so that the chain head is locked only for the commit itself.
                append_many(uow.repo.conn, req.trail.records, chains=chains)
                committing = True
                uow.commit()
                return resp
        except DBAPIError as exc:
            # The connection was dead (a database restart, an idle cut: the pool checks only
            # connections idle for a while, store/engine.py): the server rolled back whatever
            # it had, and the pool now hands out new connections; run it again. Not if it died
            # during the commit itself: that may have committed.
            if exc.connection_invalidated and not committing and attempt < attempts - 1:
                continue
            # A deadlock or serialisation failure between concurrent transactions: nothing was
            # written; retry a couple of times, then tell the client to retry.
            if _is_retryable(exc) and attempt < attempts - 1:
                continue
            if _is_retryable(exc):
                raise outcomes.conflict(
                    "The database was busy with a conflicting change; retry the request"
                ) from exc
            raise
    raise AssertionError("unreachable")


def _commit_refusal(
    uow: UnitOfWork, req: FhirRequest, err: OperationOutcomeError, chains: int
) -> bool:
    """Append the refusal's audit event and commit; False (logged) if the database refused,
    so that the caller audits it the other way and the client still gets the real refusal."""
    assert req.trail is not None
    try:
        _refusal_record(req.trail, req.method, req.path, req.params, err, req.body)
        append_many(uow.repo.conn, req.trail.records, chains=chains)
        uow.commit()
    except DBAPIError:
        log.warning("could not audit a refusal in its own transaction; auditing it separately")
        return False
    return True


def _execute_as_actor(
    uow: UnitOfWork, req: FhirRequest, identify: Callable[[Connection], Principal | None] | None
) -> FhirResponse:
    assert req.trail is not None
    if identify is not None:
        _identify(req, identify(uow.repo.conn))
    actor = resolve_actor(
        uow.repo.conn,
        uow.repo,
        req.principal,
        acting_organization=req.acting_organization,
        break_glass=req.break_glass,
    )
    req.trail.who = replace(req.trail.who, role=req.trail.who.role or actor.role)
    if actor.break_glass:
        # Flagged for the regulator's review: who broke the glass, why, from where.
        req.trail.add("break-glass", refs=[req.path], purpose=actor.break_glass)
    return execute(cast(Repository, GuardedRepository(uow.repo, actor)), req)


def _identify(req: FhirRequest, principal: Principal | None) -> None:
    """The request acts as ``principal``; its audit trail names it (in place: the refusal
    path audits through the same trail)."""
    assert req.trail is not None
    req.principal = principal
    if principal is not None:
        who = req.trail.who
        req.trail.who = Who(
            agent=principal.fhir_user or f"urn:carenet:client:{principal.client_id}",
            role=principal.account_role,
            on_behalf_of=principal.launch_patient,
            source_address=who.source_address,
            request_id=who.request_id,
        )


_AUTH_SUBTYPES = {
    "login": ("login", 0),
    "login-failed": ("login-failed", 4),
    "logout": ("logout", 0),
    "token": ("login", 0),
    "token-refused": ("login-failed", 4),
    "authorize": ("login", 0),
    "authorize-denied": ("login-failed", 4),
}


def _audit_auth_event(settings: Settings) -> Any:
    """Logins, failed logins, token grants and refusals go to the audit chain, in the same
    transaction as the step they record."""
    from carenet.audit import AuditRecord

    def hook(conn: Any, event: Any) -> None:
        subtype, outcome = _AUTH_SUBTYPES.get(event.action, ("login-failed", 4))
        if event.account_id:
            agent = f"urn:carenet:account:{event.account_id}"
        elif event.client_id:
            agent = f"urn:carenet:client:{event.client_id}"
        else:
            agent = "anonymous"
        record = AuditRecord(
            subtype=subtype,
            agent=agent,
            outcome=outcome,
            source_address=event.source,
            detail={
                "step": event.action,
                **({"code": event.code} if event.code else {}),
                **({"client": event.client_id} if event.client_id else {}),
            },
        )
        append_many(conn, [record], chains=settings.audit_chains)

    return hook


def _record_refusal(
    store: Store,
    request: Request,
    path: str,
    params: list[tuple[str, str]],
    err: OperationOutcomeError,
    chains: int,
    trail: Trail | None,
    body: Any = None,
) -> None:
    """A refused request is audited too, in a transaction of its own (the action's rolled back)."""
    if trail is None:
        trail = Trail(Who(source_address=request.client.host if request.client else None))
    _refusal_record(trail, request.method.upper(), path, params, err, body)
    try:
        with store.engine.begin() as conn:
            append_many(conn, trail.records, chains=chains)
    except DBAPIError:
        log.exception("could not audit a refused request")


def _refusal_record(
    trail: Trail,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    err: OperationOutcomeError,
    body: Any = None,
) -> None:
    """The trail's one record of a refusal (whatever it had gathered before is dropped)."""
    parts = [p for p in path.split("/") if p]
    ref = "/".join(parts[:2]) if len(parts) >= 2 and not parts[1].startswith("_") else None
    trail.records.clear()
    trail.add(
        interaction_of(method, path, body) or "operation",
        refs=[ref] if ref else None,
        query=urlencode(params) or None,
        outcome=OUTCOME_SERIOUS_FAILURE if err.status >= 500 else OUTCOME_MINOR_FAILURE,
        detail={"status": err.status, "codes": [i.details_code or i.code for i in err.issues][:10]},
    )


def _is_retryable(exc: DBAPIError) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code in ("40001", "40P01", "23505"):
        return True
    return "database is locked" in str(exc)
