"""Password hashing with argon2id (argon2-cffi), with parameters from the AuthPolicy."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from carenet.access.policy import AuthPolicy


@lru_cache(maxsize=8)
def password_hasher(policy: AuthPolicy) -> PasswordHasher:
    return PasswordHasher(
        time_cost=policy.argon2_time_cost,
        memory_cost=policy.argon2_memory_cost_kib,
        parallelism=policy.argon2_parallelism,
        type=Type.ID,
    )


@lru_cache(maxsize=8)
def _dummy_hash(policy: AuthPolicy) -> str:
    return password_hasher(policy).hash("carenet-dummy-password-for-timing")


def hash_password(password: str, policy: AuthPolicy) -> str:
    return password_hasher(policy).hash(password)


def verify_password(stored_hash: str | None, password: str, policy: AuthPolicy) -> bool:
    """True when ``password`` matches. With no stored hash (unknown user, or an account without
    a password) a dummy hash is checked, so the answer takes as long either way."""
    hasher = password_hasher(policy)
    try:
        ok = hasher.verify(stored_hash or _dummy_hash(policy), password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str, policy: AuthPolicy) -> bool:
    """True when the hash was made with other parameters than the policy's current ones."""
    try:
        return password_hasher(policy).check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
