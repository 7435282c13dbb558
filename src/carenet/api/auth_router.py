"""Assembles the auth routes: SMART configuration, OAuth2 endpoints, authorize page, login API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from carenet.access.accounts import AuthContext
from carenet.access.oauth_tokens import (
    OAuthPolicy,
)
from carenet.api.auth import (
    _FORM,
    AuthEventHook,
    AuthService,
    json_response,
    oauth_policy_from_settings,
    outcome_response,
    read_form,
    read_json,
    smart_configuration,
)
from carenet.api.auth_login import LoginApi
from carenet.api.auth_pages import AuthorizePages
from carenet.config import Settings
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.uow import Store

log = logging.getLogger(__name__)


def create_auth_router(
    settings: Settings,
    store: Store,
    auth_ctx: AuthContext,
    *,
    policy: OAuthPolicy | None = None,
    on_event: AuthEventHook | None = None,
) -> APIRouter:
    """/.well-known/smart-configuration (also under /fhir), the OAuth2 endpoints, the login and
    consent page at /auth/authorize and the portals' JSON login API under /auth."""
    svc = AuthService(
        settings, store, auth_ctx, policy or oauth_policy_from_settings(settings), on_event
    )
    pages = AuthorizePages(svc)
    router = APIRouter(tags=["Auth"])

    def smart_config() -> Response:
        return JSONResponse(smart_configuration(settings))

    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        router.add_api_route(path, smart_config, methods=["GET"], summary="SMART configuration")

    def oauth_route(kind: str) -> Callable[[Request], Any]:
        async def route(request: Request) -> Response:
            try:
                form = await read_form(request)
            except OperationOutcomeError:
                return json_response(
                    {
                        "error": "invalid_request",
                        "error_description": f"the body must be {_FORM} in UTF-8",
                        "code": "OAUTH-INVALID-REQUEST",
                    },
                    400,
                )
            return await run_in_threadpool(svc.endpoint, request, form, kind)

        return route

    router.add_api_route(
        "/auth/token", oauth_route("token"), methods=["POST"], summary="OAuth2 token endpoint"
    )
    router.add_api_route(
        "/auth/revoke", oauth_route("revocation"), methods=["POST"], summary="RFC 7009 revocation"
    )
    router.add_api_route(
        "/auth/introspect",
        oauth_route("introspection"),
        methods=["POST"],
        summary="RFC 7662 introspection",
    )

    async def authorize_get(request: Request) -> Response:
        return await run_in_threadpool(pages.get, request)

    async def authorize_post(request: Request) -> Response:
        try:
            form = await read_form(request)
        except OperationOutcomeError as err:
            return pages.error(err)
        return await run_in_threadpool(pages.post, request, form)

    router.add_api_route(
        "/auth/authorize", authorize_get, methods=["GET"], summary="Authorization: login, consent"
    )
    router.add_api_route(
        "/auth/authorize", authorize_post, methods=["POST"], include_in_schema=False
    )
    for path, method, fn, summary in LoginApi(svc).routes():
        router.add_api_route(path, json_route(fn), methods=[method], summary=summary)
    return router


def json_route(fn: Callable[[Request, dict[str, Any]], Response]) -> Callable[[Request], Any]:
    async def route(request: Request) -> Response:
        try:
            data = await read_json(request) if request.method == "POST" else {}
            return await run_in_threadpool(fn, request, data)
        except OperationOutcomeError as err:
            return outcome_response(err)

    return route
