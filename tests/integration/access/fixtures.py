"""Factories of FHIR resources and accounts with random identifiers, for identity tests."""

from __future__ import annotations

import random
import uuid
from datetime import date
from typing import Any

from carenet.access.accounts import Account, register_staff
from carenet.fhir import identifiers as ids

from .conftest import Env

PASSWORD = "s3cret-passw0rd"


def resident_id(birth: date, *, sex: str = "female", region: str = "330122") -> str:
    seq = random.randrange(0, 499) * 2 + (1 if sex == "male" else 0)
    return ids.make_resident_id(region, birth, seq)


def phone() -> str:
    return "13" + "".join(random.choice("0123456789") for _ in range(9))


def login_name(prefix: str = "user") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def organization(env: Env, name: str = "桐庐县第一人民医院") -> str:
    uscc = ids.uscc_check_character
    first17 = "12330122" + "".join(random.choice("0123456789") for _ in range(9))
    resource = {
        "resourceType": "Organization",
        "identifier": [{"system": ids.ORGANIZATION_USCC, "value": first17 + uscc(first17)}],
        "active": True,
        "name": name,
    }
    return "Organization/" + env.run(lambda c, r: r.create("Organization", resource))["id"]


def practitioner(env: Env, licence: str | None = None) -> tuple[str, str]:
    licence = licence or "1" + "".join(random.choice("0123456789") for _ in range(14))
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [{"use": "official", "system": ids.PRACTITIONER_LICENCE, "value": licence}],
        "active": True,
        "name": [{"text": "王医生"}],
        "qualification": [
            {
                "identifier": [{"system": ids.PRACTITIONER_QUALIFICATION, "value": "Q" + licence}],
                "code": {"text": "执业医师"},
            }
        ],
    }
    created = env.run(lambda c, r: r.create("Practitioner", resource))
    return "Practitioner/" + created["id"], licence


def staff(
    env: Env,
    role: str = "doctor",
    *,
    practitioner_ref: str | None = None,
    organization_ref: str | None = None,
) -> Account:
    if role in ("doctor", "nurse", "pharmacist") and practitioner_ref is None:
        practitioner_ref, _ = practitioner(env)
    return env.run(
        lambda c, r: register_staff(
            c,
            r,
            env.ctx,
            role=role,
            login_name=login_name(role),
            password=PASSWORD,
            practitioner_ref=practitioner_ref,
            organization_ref=organization_ref,
        )
    )
