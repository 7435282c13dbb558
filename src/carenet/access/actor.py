"""Who is asking: the Actor of a request, resolved afresh from its token on every request
(so a suspended practitioner role or an ended guardianship takes effect at once)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from carenet.access import oauth_errors
from carenet.access.grants import grant_applies
from carenet.access.guardians import active_wards, own_then_wards
from carenet.access.oauth_tokens import Principal
from carenet.access.permissions import STAFF_ROLES
from carenet.fhir import outcomes
from carenet.store.repository import Repository


@dataclass(frozen=True)
class Actor:
    role: str
    agent: str
    patients: frozenset[str] = frozenset()  # Patient ids the actor acts for
    organizations: frozenset[str] = frozenset()  # Organization ids of active, verified roles
    acting_organization: str | None = None  # where what they write belongs
    practitioner: str | None = None  # "Practitioner/<id>" of a staff actor (for grants)
    break_glass: str | None = None  # the stated reason, when reading beyond their scope


ANONYMOUS = Actor("anonymous", "anonymous")


def _id(ref: str | None, rtype: str) -> str | None:
    if ref and ref.startswith(f"{rtype}/"):
        return ref.split("/")[1]
    return None


def resolve_actor(
    conn: Connection,
    repo: Repository,
    principal: Principal | None,
    *,
    acting_organization: str | None = None,
    break_glass: str | None = None,
) -> Actor:
    """The Actor of a request from its bearer token's Principal (None: anonymous)."""
    if principal is None:
        return ANONYMOUS
    agent = principal.fhir_user or f"urn:carenet:client:{principal.client_id}"
    if principal.account_id is None:
        # A backend service (an HIS interface, another node) writes on behalf of whichever
        # institution it names: its data then belongs there like that institution's staff's.
        org = (acting_organization or "").strip().removeprefix("Organization/") or None
        return Actor("system", agent, acting_organization=org)
    role = principal.account_role or "anonymous"
    if role == "patient":
        if principal.launch_patient:
            refs = [principal.launch_patient]
        else:
            # The account row came with the token (one statement); only wards need a query.
            wards = active_wards(conn, principal.account_id) if principal.has_wards else []
            refs = own_then_wards(principal.fhir_user, principal.real_name_verified, wards)
        return Actor(
            "patient", agent, patients=frozenset(i for r in refs if (i := _id(r, "Patient")))
        )
    if role in STAFF_ROLES:
        from carenet.access.practitioners import active_roles

        roles = active_roles(conn, repo, principal.fhir_user or "") if principal.fhir_user else []
        orgs = frozenset(
            i
            for r in roles
            if (i := _id((r.get("organization") or {}).get("reference"), "Organization"))
        )
        if not orgs:
            # Only an active, verified role may act clinically; a suspension takes effect on
            # the very next request because roles are read afresh here.
            raise outcomes.OperationOutcomeError(
                403,
                [
                    outcomes.Issue(
                        "error",
                        "forbidden",
                        "没有已核验的有效执业角色 / no active, verified practitioner role",
                        (),
                        "AUTH-ROLE-NOT-ACTIVE",
                    )
                ],
            )
        acting = _acting(orgs, acting_organization)
        reason = (break_glass or "").strip() or None
        return Actor(
            role,
            agent,
            organizations=orgs,
            acting_organization=acting,
            practitioner=principal.fhir_user,
            break_glass=reason,
        )
    if role == "institution_admin":
        org = _id(principal.organization_ref, "Organization")
        orgs = frozenset({org}) if org else frozenset()
        return Actor(role, agent, organizations=orgs, acting_organization=org)
    if role in ("regional_admin", "regulator"):
        return Actor(role, agent)
    raise oauth_errors.insufficient_scope(f"a role CareNet knows (got {role!r})")


def _acting(orgs: frozenset[str], asked: str | None) -> str | None:
    if asked:
        asked = asked.removeprefix("Organization/")
        if asked not in orgs:
            raise outcomes.OperationOutcomeError(
                403,
                [
                    outcomes.Issue(
                        "error",
                        "forbidden",
                        f"You have no active role at Organization/{asked}",
                        (),
                        "ACCESS-NOT-AT-ORGANIZATION",
                    )
                ],
            )
        return asked
    return next(iter(orgs)) if len(orgs) == 1 else None


# Where a patient's record is opened to another institution or practitioner (issue 3): the
# patient's Consent, an active referral or remote consultation (ServiceRequest performer), a
# family-doctor team (CareTeam participant) or an executed family-doctor contract (Contract
# signer). Each: (type, reference parameter naming the actor, status, element naming the patient).
GRANTS: tuple[tuple[str, str, str, str], ...] = (
    ("Consent", "actor", "active", "patient"),
    ("ServiceRequest", "performer", "active", "subject"),
    ("CareTeam", "participant", "active", "subject"),
    ("Contract", "signer", "executed", "subject"),
)


def granted_patients(
    repo: Repository, orgs: frozenset[str], practitioner: str | None
) -> frozenset[str]:
    """Patients whose record is opened to the practitioner or one of their institutions."""
    actors = [f"Organization/{o}" for o in sorted(orgs)] + ([practitioner] if practitioner else [])
    if not actors:
        return frozenset()
    out: set[str] = set()
    for rtype, param, status, element in GRANTS:
        result = repo.search(
            rtype, [(param, ",".join(actors)), ("status", status), ("_count", "1000")]
        )
        for grant in result.matches:
            if not grant_applies(grant, actors, repo.clock(), repo.tz):
                continue
            value = grant.get(element)
            for ref in value if isinstance(value, list) else [value]:
                pid = _id((ref or {}).get("reference"), "Patient")
                if pid:
                    out.add(pid)
    return frozenset(out)
