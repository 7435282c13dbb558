"""The per-actor repository: every interaction is checked against the rules table
(access/permissions.py) here, in the repository layer, whatever path it came by — REST, Bundle
entries, conditional interactions, operations (DESIGN.md principle 4).

Refusals: an interaction the role may not do at all answers 401 (anonymous) or 403; a resource
the actor may not see answers 404 exactly like one that does not exist, so nothing about it
leaks; searches, includes, chains and _has see only what the actor may see.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, select

from carenet.access.actor import Actor, granted_patients
from carenet.access.oauth_errors import token_missing
from carenet.access.permissions import (
    READS,
    STAFF_ROLES,
    Scope,
    category,
    operation_scope,
    scope_for,
)
from carenet.fhir import outcomes
from carenet.fhir.identifiers import OWNER_ORGANIZATION
from carenet.fhir.searchparams import patient_compartment
from carenet.fhir.validation import assert_valid
from carenet.store import indexer
from carenet.store.repository import HistoryPage, Repository, apply_json_patch
from carenet.store.schema import idx_reference, idx_token


class GuardedRepository:
    """A Repository as seen by one Actor. Everything not overridden is delegated."""

    def __init__(self, inner: Repository, actor: Actor) -> None:
        self.inner = inner
        self.actor = actor
        self._granted: frozenset[str] | None = None

    @property
    def granted(self) -> frozenset[str]:
        """Patients whose record is opened to this staff actor (actor.GRANTS), looked up once
        per request and only when an organization-scoped decision needs them."""
        if self._granted is None:
            a = self.actor
            self._granted = (
                granted_patients(self.inner, a.organizations, a.practitioner)
                if a.organizations
                else frozenset()
            )
        return self._granted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ---------------------------------------------------------------- decisions

    def scope(self, res_type: str, interaction: str) -> Scope:
        """The data scope of an interaction; refuses (401/403) when the role may not do it."""
        a = self.actor
        scope = scope_for(a.role, res_type, interaction)
        if (
            a.break_glass
            and a.role in STAFF_ROLES
            and interaction in READS
            and category(res_type) == "clinical"
        ):
            scope = "all"
        if scope == "none":
            raise self._refused(f"{interaction} {res_type}")
        return scope

    def operation_scope(self, operation: str) -> Scope:
        """The data scope of an operation (``"Appointment/$book"``); refuses like ``scope``."""
        scope = operation_scope(self.actor.role, operation)
        if scope == "none":
            raise self._refused(operation)
        return scope

    def _refused(self, what: str) -> outcomes.OperationOutcomeError:
        role = self.actor.role
        if role == "anonymous":
            return token_missing()
        return outcomes.OperationOutcomeError(
            403,
            [
                outcomes.Issue(
                    "error",
                    "forbidden",
                    f"角色 {role} 不能执行 {what} / role {role} may not {what}",
                    (),
                    "ACCESS-DENIED",
                )
            ],
        )

    def can_see(self, resource: dict[str, Any], scope: Scope) -> bool:
        """Whether a resource lies in the data scope (checked on the resource itself)."""
        if scope == "all":
            return True
        a = self.actor
        if scope == "compartment":
            return bool(_patients_of(resource) & a.patients)
        if scope == "organization":
            if _owners(resource) & a.organizations:
                return True
            return bool(_patients_of(resource) & self.granted)
        return False

    def visible(self, scope: Scope) -> Any:
        """The SQL form of can_see for searches: (res_type, type_col, id_col) -> condition."""
        a = self.actor
        if scope == "all":
            return None

        def condition(rtype: str | None, _type_col: Any, id_col: Any) -> ColumnElement[bool]:
            if rtype is None:
                return false()  # mixed types are reachable only with scope "all"
            if scope == "compartment":
                return _in_compartment(rtype, id_col, a.patients)
            owned = _owned_by(rtype, id_col, a.organizations)
            if self.granted:
                return owned | _in_compartment(rtype, id_col, self.granted)
            return owned

        return condition

    def _prepare(
        self, res_type: str, resource: dict[str, Any], scope: Scope, current: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Owner tags are the server's: keep the current ones, stamp the acting institution on
        new data, drop any a client sent; then the result must lie in the actor's scope."""
        # Validate first: the decisions below read the resource's structure.
        assert_valid(resource, expected_type=res_type)
        tags = [
            t
            for t in (resource.get("meta") or {}).get("tag", [])
            if t.get("system") != OWNER_ORGANIZATION
        ]
        if current is not None:
            tags += [
                t
                for t in (current.get("meta") or {}).get("tag", [])
                if t.get("system") == OWNER_ORGANIZATION
            ]
        elif self.actor.acting_organization:
            tags.append({"system": OWNER_ORGANIZATION, "code": self.actor.acting_organization})
        elif scope == "organization":
            raise outcomes.bad_request(
                "You have roles at several institutions: say which one this belongs to with the "
                "X-Acting-Organization header",
                details="ACCESS-ACTING-ORGANIZATION-REQUIRED",
            )
        out = dict(resource)
        meta = {k: v for k, v in (resource.get("meta") or {}).items() if k != "tag"}
        if tags:
            meta["tag"] = tags
        if meta:
            out["meta"] = meta
        else:
            out.pop("meta", None)
        if scope != "all" and not self.can_see(out, scope):
            raise outcomes.OperationOutcomeError(
                403,
                [
                    outcomes.Issue(
                        "error",
                        "forbidden",
                        f"This {res_type} would lie outside what you may write",
                        (),
                        "ACCESS-OUT-OF-SCOPE",
                    )
                ],
            )
        return out

    def _visible_current(
        self, res_type: str, res_id: str, interaction: str
    ) -> tuple[Scope, dict[str, Any]]:
        scope = self.scope(res_type, interaction)
        resource = self.inner.read(res_type, res_id)
        if not self.can_see(resource, scope):
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        return scope, resource

    # ---------------------------------------------------------------- interactions

    def read(self, res_type: str, res_id: str) -> dict[str, Any]:
        return self._visible_current(res_type, res_id, "read")[1]

    def vread(self, res_type: str, res_id: str, version: str) -> dict[str, Any]:
        scope = self.scope(res_type, "vread")
        resource = self.inner.vread(res_type, res_id, version)
        if not self.can_see(resource, scope):
            raise outcomes.not_found(f"{res_type}/{res_id}/_history/{version} is not known")
        return resource

    def create(
        self,
        res_type: str,
        resource: dict[str, Any],
        *,
        method: str = "POST",
        res_id: str | None = None,
    ) -> dict[str, Any]:
        scope = self.scope(res_type, "create")
        return self.inner.create(
            res_type,
            self._prepare(res_type, resource, scope, None),
            method=method,
            res_id=res_id,
            validated=True,
        )

    def conditional_create(
        self, res_type: str, resource: dict[str, Any], criteria: str, *, res_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        scope = self.scope(res_type, "create")
        match = self.conditional_match(res_type, criteria)
        if match is not None:
            return match, False
        return self.inner.create(
            res_type, self._prepare(res_type, resource, scope, None), res_id=res_id, validated=True
        ), True

    def conditional_match(self, res_type: str, criteria: str) -> dict[str, Any] | None:
        self.scope(res_type, "search")
        found = self.find(res_type, criteria, limit=2)
        if len(found) > 1:
            raise outcomes.precondition_failed(
                f"If-None-Exist criteria {criteria!r} match more than one {res_type}"
            )
        return found[0] if found else None

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        method: str = "PUT",
    ) -> tuple[dict[str, Any], bool]:
        current_version = self.inner.current_version(res_type, res_id)
        if current_version is None or current_version[1]:
            scope = self.scope(res_type, "create")
            current = None
        else:
            scope, current = self._visible_current(
                res_type, res_id, "update" if method != "PATCH" else "patch"
            )
        return self.inner.update(
            res_type,
            res_id,
            self._prepare(res_type, resource, scope, current),
            if_match=if_match,
            method=method,
            validated=True,
        )

    def patch(
        self, res_type: str, res_id: str, operations: Any, *, if_match: int | None = None
    ) -> dict[str, Any]:
        _, current = self._visible_current(res_type, res_id, "patch")
        patched = apply_json_patch(current, operations, res_type, res_id)
        stored, _ = self.update(res_type, res_id, patched, if_match=if_match, method="PATCH")
        return stored

    def delete(self, res_type: str, res_id: str) -> bool:
        version = self.inner.current_version(res_type, res_id)
        if version is not None and version[1]:
            self.scope(res_type, "delete")
            return False
        self._visible_current(res_type, res_id, "delete")
        return self.inner.delete(res_type, res_id)

    def search(
        self, res_type: str | None, params: list[tuple[str, str]], *, strict: bool = False
    ) -> Any:
        if res_type is None:
            from carenet.fhir.definitions import resource_types

            for rt in resource_types() - {"AuditEvent"}:  # AuditEvents live in the chain
                if self.scope(rt, "search") != "all":
                    raise self._only_all("a search across all resource types")
            return self.inner.search(None, params, strict=strict)
        scope = self.scope(res_type, "search")
        return self.inner.search(res_type, params, strict=strict, visible=self.visible(scope))

    def find(self, res_type: str, criteria: str, *, limit: int = 2) -> list[dict[str, Any]]:
        scope = self.scope(res_type, "search")
        return self.inner.find(res_type, criteria, limit=limit, visible=self.visible(scope))

    def current_version(self, res_type: str, res_id: str) -> tuple[int, bool] | None:
        """Asked before an instance history: the role must be allowed history at all."""
        self.scope(res_type, "history")
        return self.inner.current_version(res_type, res_id)

    def history(
        self, res_type: str | None = None, res_id: str | None = None, **kw: Any
    ) -> HistoryPage:
        if res_type is not None and res_id is not None:
            scope = self.scope(res_type, "history")
            page = self.inner.history(res_type, res_id, **kw)
            latest = next((e.resource for e in page.entries if e.resource is not None), None)
            if latest is None:
                latest = next(
                    (
                        e.resource
                        for e in self.inner.history(res_type, res_id, count=50).entries
                        if e.resource
                    ),
                    None,
                )
            if latest is None or not self.can_see(latest, scope):
                raise outcomes.not_found(f"{res_type}/{res_id} is not known")
            return page
        from carenet.fhir.definitions import resource_types

        for rt in [res_type] if res_type else sorted(resource_types() - {"AuditEvent"}):
            if self.scope(rt, "history") != "all":
                raise self._only_all("history across many resources")
        return self.inner.history(res_type, res_id, **kw)

    def _only_all(self, what: str) -> outcomes.OperationOutcomeError:
        return outcomes.OperationOutcomeError(
            403,
            [
                outcomes.Issue(
                    "error",
                    "forbidden",
                    f"{what} is open only to roles that may read everything of those types; search by type instead",
                    (),
                    "ACCESS-DENIED",
                )
            ],
        )


# ------------------------------------------------------------------ scope membership


def _patients_of(resource: dict[str, Any]) -> set[str]:
    """Patient ids whose compartment holds the resource (R4 CompartmentDefinition)."""
    rtype = resource.get("resourceType", "")
    if rtype == "Patient":
        return {str(resource.get("id"))}
    params = set(patient_compartment().get(rtype, ()))
    if not params:
        return set()
    rows = indexer.rows_for({**resource, "id": resource.get("id") or "new"}).get(
        "idx_reference", []
    )
    return {
        r["target_id"]
        for r in rows
        if r["param"] in params and r["target_type"] == "Patient" and r["target_id"]
    }


def _owners(resource: dict[str, Any]) -> set[str]:
    return {
        t.get("code")
        for t in (resource.get("meta") or {}).get("tag", [])
        if t.get("system") == OWNER_ORGANIZATION
    }


def _in_compartment(rtype: str, id_col: Any, patients: frozenset[str]) -> ColumnElement[bool]:
    if not patients:
        return false()
    if rtype == "Patient":
        return id_col.in_(sorted(patients))
    params = patient_compartment().get(rtype)
    if not params:
        return false()
    r = idx_reference.alias()
    return id_col.in_(
        select(r.c.res_id).where(
            r.c.res_type == rtype,
            r.c.param.in_(params),
            r.c.target_type == "Patient",
            r.c.target_id.in_(sorted(patients)),
        )
    )


def _owned_by(rtype: str, id_col: Any, orgs: frozenset[str]) -> ColumnElement[bool]:
    if not orgs:
        return false()
    t = idx_token.alias()
    return id_col.in_(
        select(t.c.res_id).where(
            t.c.res_type == rtype,
            t.c.param == "_tag",
            t.c.system == OWNER_ORGANIZATION,
            t.c.code.in_(sorted(orgs)),
        )
    )
