"""Login throttling: failures counted per key in a sliding window; reaching the limit locks the
key for a while, even for the right password. Keys are blind indexes of what the user typed
(login name or phone), known account or not, so a lockout reveals nothing about who exists."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from carenet.access.policy import AuthPolicy
from carenet.access.ports import FieldProtector
from carenet.access.schema import login_failures, login_lockouts


def throttle_key(protector: FieldProtector, kind: str, value: str) -> str:
    return protector.blind_index(f"{kind}:{value}", field="login")


def lockout_remaining(conn: Connection, key: str, now: int) -> int:
    """Seconds (rounded up) until ``key`` is unlocked; 0 when it is not locked."""
    until = conn.execute(
        select(login_lockouts.c.locked_until).where(login_lockouts.c.throttle_key == key)
    ).scalar_one_or_none()
    if until is None or until <= now:
        return 0
    return -(-(until - now) // 1000)


def record_failure(conn: Connection, key: str, now: int, policy: AuthPolicy) -> bool:
    """Count one failure; True when it locks the key (failures then start again from zero)."""
    conn.execute(insert(login_failures).values(throttle_key=key, at=now))
    since = now - policy.failure_window_seconds * 1000
    count = conn.execute(
        select(func.count())
        .select_from(login_failures)
        .where(login_failures.c.throttle_key == key, login_failures.c.at > since)
    ).scalar_one()
    if count < policy.max_failed_logins:
        return False
    until = now + policy.lockout_seconds * 1000
    conn.execute(delete(login_lockouts).where(login_lockouts.c.throttle_key == key))
    try:
        with conn.begin_nested():
            conn.execute(insert(login_lockouts).values(throttle_key=key, locked_until=until))
    except IntegrityError:
        pass  # a concurrent failure locked it already
    conn.execute(delete(login_failures).where(login_failures.c.throttle_key == key))
    return True


def clear_failures(conn: Connection, key: str) -> None:
    """After a successful login: the count starts again (expired lockouts go too)."""
    conn.execute(delete(login_failures).where(login_failures.c.throttle_key == key))
    conn.execute(delete(login_lockouts).where(login_lockouts.c.throttle_key == key))
