"""Tables of identity and login: accounts and their credentials, login throttling, one-time
codes, the resident-ID index, guardianships and the verification state of practitioner roles.

They sit on the shared ``carenet.store.schema.metadata`` so that Alembic sees them. Only what
FHIR has no place for lives here (DESIGN.md principle 1); people themselves are Patient,
Practitioner, RelatedPerson and PractitionerRole resources. Instants are milliseconds since the
epoch, UTC, as in the store. Phone numbers, resident IDs and TOTP secrets never appear in clear:
ciphertext (``*_enc``) and keyed blind indexes (``*_index``) from the FieldProtector.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from carenet.store.schema import metadata

_ID = String(36)  # a UUID
_REF = String(140)  # "Patient/<uuid>"
_BLIND = String(128)  # a blind index (hex)

accounts = Table(
    "accounts",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("kind", String(8), nullable=False),  # person | system
    Column("role", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # active | locked | suspended | disabled
    # The Patient or Practitioner this account is (None until a patient's real name is verified).
    Column("fhir_ref", _REF, nullable=True),
    # The institution a staff member administers or a system client belongs to.
    Column("organization_ref", _REF, nullable=True),
    Column("login_name", String(64), nullable=True, unique=True),  # case-folded
    Column("phone_index", _BLIND, nullable=True, unique=True),
    Column("phone_enc", Text, nullable=True),
    Column("password_hash", Text, nullable=True),
    Column("totp_secret_enc", Text, nullable=True),
    Column("totp_pending_enc", Text, nullable=True),
    Column("totp_enrolled_at", BigInteger, nullable=True),
    # The last TOTP time step accepted: a code of this step or an earlier one is a replay.
    Column("totp_last_step", BigInteger, nullable=True),
    # One account per person: the blind index of the verified resident ID.
    Column("resident_index", _BLIND, nullable=True, unique=True),
    Column("real_name_verified_at", BigInteger, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
)
Index("ix_accounts_fhir_ref", accounts.c.fhir_ref)

# Failed logins per throttling key (a blind index of the login name or phone, known or not, so
# that unknown names are throttled exactly like real ones).
login_failures = Table(
    "login_failures",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("throttle_key", _BLIND, nullable=False),
    Column("at", BigInteger, nullable=False),
)
Index("ix_login_failures_key_at", login_failures.c.throttle_key, login_failures.c.at)

login_lockouts = Table(
    "login_lockouts",
    metadata,
    Column("throttle_key", _BLIND, primary_key=True),
    Column("locked_until", BigInteger, nullable=False),
)

# SMS one-time codes: only a keyed hash of the code is kept.
otp_codes = Table(
    "otp_codes",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("purpose", String(32), nullable=False),  # login
    Column("phone_index", _BLIND, nullable=False),
    Column("code_hash", _BLIND, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("consumed_at", BigInteger, nullable=True),
    # Set when a newer code for the same phone replaces this one.
    Column("superseded_at", BigInteger, nullable=True),
)
Index("ix_otp_codes_phone", otp_codes.c.phone_index, otp_codes.c.purpose, otp_codes.c.created)

# The same resident ID always resolves to the same Patient: the unique key on the blind index
# is what stops two concurrent verifications from creating two Patients.
resident_index = Table(
    "resident_index",
    metadata,
    Column("blind_index", _BLIND, primary_key=True),
    Column("patient_id", String(64), nullable=False, unique=True),
    Column("created", BigInteger, nullable=False),
)

# An account acting for a patient (a minor or an elder) through a RelatedPerson.
guardianships = Table(
    "guardianships",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("account_id", _ID, nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("related_person_id", String(64), nullable=False),
    Column("consent_id", String(64), nullable=True),
    Column("relationship", String(16), nullable=False),  # v3-RoleCode
    Column("basis", String(8), nullable=False),  # minor | elder
    # A guardianship of a minor ends on the ward's 18th birthday (start of day, node time).
    Column("ends_at", BigInteger, nullable=True),
    Column("status", String(8), nullable=False),  # active | revoked
    Column("created", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    UniqueConstraint("account_id", "patient_id", name="uq_guardianships_account_patient"),
)
Index("ix_guardianships_patient", guardianships.c.patient_id)

# Verification state of each PractitionerRole (多点执业: one per practitioner and institution).
# PractitionerRole.active mirrors it; both must say so before a role may act clinically.
practitioner_role_status = Table(
    "practitioner_role_status",
    metadata,
    Column("role_id", String(64), primary_key=True),
    Column("practitioner_id", String(64), nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("role_code", String(32), nullable=False),
    Column("licence_system", String(256), nullable=False),
    Column("licence_number", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | verified | suspended
    Column("verified_by", _ID, nullable=True),
    Column("verified_at", BigInteger, nullable=True),
    Column("suspended_by", _ID, nullable=True),
    Column("suspended_at", BigInteger, nullable=True),
    Column("reason", Text, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    UniqueConstraint(
        "practitioner_id", "organization_id", name="uq_practitioner_role_status_practitioner_org"
    ),
)

ACCESS_TABLES: tuple[Table, ...] = (
    accounts,
    login_failures,
    login_lockouts,
    otp_codes,
    resident_index,
    guardianships,
    practitioner_role_status,
)
