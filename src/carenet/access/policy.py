"""The numbers of identity and login: roles, lockout, one-time codes, passwords, guardians.

Every number is a parameter with a default (RULES.md: config, never literals); bootstrap builds an
``AuthPolicy`` from Settings. Times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PERSON_ROLES: Final = frozenset(
    {
        "patient",
        "doctor",
        "pharmacist",
        "nurse",
        "institution_admin",
        "regional_admin",
        "regulator",
    }
)
#: Roles that act on other people's data: a TOTP second factor is required to log in.
STAFF_ROLES: Final = PERSON_ROLES - {"patient"}
#: Roles whose account must link to a Practitioner (they act clinically through a role).
CLINICAL_ROLES: Final = frozenset({"doctor", "pharmacist", "nurse"})
#: System clients: courier company, device gateway, another CareNet node.
SYSTEM_ROLES: Final = frozenset({"courier", "device_gateway", "node"})

ACCOUNT_STATUSES: Final = ("active", "locked", "suspended", "disabled")


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    # Lockout: this many failed logins within the window lock the login for lockout_seconds.
    max_failed_logins: int = 5
    failure_window_seconds: int = 15 * 60
    lockout_seconds: int = 15 * 60
    # Passwords (argon2id): OWASP's second recommended setting by default.
    min_password_length: int = 10
    argon2_time_cost: int = 3
    argon2_memory_cost_kib: int = 64 * 1024
    argon2_parallelism: int = 4
    # TOTP (RFC 6238): 30-second steps, 6 digits, one step either side accepted.
    totp_issuer: str = "CareNet"
    totp_interval_seconds: int = 30
    totp_digits: int = 6
    totp_valid_window: int = 1
    # SMS one-time login codes.
    otp_digits: int = 6
    otp_ttl_seconds: int = 5 * 60
    otp_max_attempts: int = 5
    otp_resend_interval_seconds: int = 60
    otp_max_per_day: int = 10
    # Guardians: under 18 is a minor (民法典 Art 17); under 14 needs guardian consent
    # (个人信息保护法 Art 31, RULES.md PRIV-1); 60 and over is an elder (老年人权益保障法 Art 2).
    adult_age: int = 18
    guardian_consent_age: int = 14
    elder_age: int = 60
    # A resident ID whose region code is not in the node's GB/T 2260 list only warns by default:
    # numbers keep withdrawn codes for life and a node knows only its own region's divisions.
    block_unknown_region: bool = False
    timezone: str = "Asia/Shanghai"
