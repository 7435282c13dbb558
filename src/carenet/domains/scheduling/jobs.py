"""Scheduled scheduling work (run by ``carenet remind`` from cron, or any job runner): the
day-before reminders, as the system, audited like any other action."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from carenet.access.actor import Actor
from carenet.access.guard import GuardedRepository
from carenet.adapters.notify.outbox import Notifier
from carenet.audit import AuditRecord, append_many
from carenet.config import Settings
from carenet.domains.scheduling import service, visit
from carenet.domains.scheduling.rules import BookingPolicy
from carenet.domains.scheduling.sessions import ReleasePolicy
from carenet.store.uow import Store

JOB_AGENT = "urn:carenet:job:appointment-reminders"


def remind_day_before(
    store: Store,
    settings: Settings,
    notifier: Notifier | None,
    day: date,
    *,
    now: datetime | None = None,
) -> int:
    """Queue a reminder SMS for every appointment booked on ``day`` not yet reminded; returns
    how many. One transaction: the reminders, the marks on the appointments and the audit
    event commit together (running it twice sends nothing twice)."""
    tz = ZoneInfo(settings.timezone)
    with store.unit_of_work() as uow:
        ctx = service.SchedulingContext(
            guard=GuardedRepository(uow.repo, Actor("system", JOB_AGENT)),
            policy=BookingPolicy(),
            release=ReleasePolicy(at=time.fromisoformat(settings.booking_release_time)),
            tz=tz,
            now=(now or datetime.now(tz)).astimezone(tz),
            notifier=notifier,
        )
        reminded = visit.send_day_before_reminders(ctx, day)
        uow.repo.flush()
        records = [
            AuditRecord(
                subtype="operation",
                agent=JOB_AGENT,
                agent_role="system",
                patient=f"Patient/{pid}" if (pid := _patient(a)) else None,
                entities=(f"Appointment/{a['id']}",),
                detail={"operation": "appointment-reminder", "day": day.isoformat()},
            )
            for a in reminded
        ]
        if records:
            append_many(uow.repo.conn, records, chains=settings.audit_chains)
        uow.commit()
    return len(reminded)


def _patient(appointment: dict[str, object]) -> str | None:
    from carenet.domains.scheduling.model import patient_of

    return patient_of(appointment)
