"""Scheduled scheduling work, run daily from cron (``carenet scheduling roll`` and ``carenet
scheduling remind``) or any job runner: rolling the slot window forward and the day-before
reminders, as the system, audited like any other action."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from carenet.access.actor import Actor
from carenet.access.guard import GuardedRepository
from carenet.adapters.notify.outbox import Notifier
from carenet.audit import AuditRecord, append_many
from carenet.config import Settings
from carenet.domains.scheduling import policy, service, visit
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.store.uow import Store

REMINDER_AGENT = "urn:carenet:job:appointment-reminders"
ROLL_AGENT = "urn:carenet:job:roll-schedules"


def _context(
    uow: Any, settings: Settings, notifier: Notifier | None, now: datetime | None, agent: str
) -> service.SchedulingContext:
    tz = ZoneInfo(settings.timezone)
    return service.SchedulingContext(
        guard=GuardedRepository(uow.repo, Actor("system", agent)),
        policy=policy.booking_policy(settings),
        release=policy.release_policy(settings),
        tz=tz,
        now=(now or datetime.now(tz)).astimezone(tz),
        notifier=notifier,
        holidays=policy.holidays(settings),
    )


def roll_schedules(
    store: Store, settings: Settings, *, now: datetime | None = None
) -> tuple[int, int, list[str]]:
    """Generate the slots of every active Schedule for the booking window from today (rolling
    it forward one day each day). One transaction per schedule, so one broken template does not
    stop the others. Returns (schedules done, slots created, ids of schedules refused)."""
    with store.unit_of_work() as uow:
        ids = [s["id"] for s in service.search_all(uow.repo, "Schedule", [("active", "true")])]
    done = created = 0
    refused: list[str] = []
    for schedule_id in ids:
        try:
            with store.unit_of_work() as uow:
                ctx = _context(uow, settings, None, now, ROLL_AGENT)
                slots = service.generate_schedule_slots(
                    ctx, schedule_id, ctx.now.date(), settings.booking_window_days
                )
                uow.repo.flush()
                if slots:
                    append_many(
                        uow.repo.conn,
                        [
                            AuditRecord(
                                subtype="operation",
                                agent=ROLL_AGENT,
                                agent_role="system",
                                entities=(f"Schedule/{schedule_id}",),
                                detail={"operation": "Schedule/$generate", "created": len(slots)},
                            )
                        ],
                        chains=settings.audit_chains,
                    )
                uow.commit()
            done += 1
            created += len(slots)
        except OperationOutcomeError:
            refused.append(schedule_id)
    return done, created, refused


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
    with store.unit_of_work() as uow:
        ctx = _context(uow, settings, notifier, now, REMINDER_AGENT)
        reminded = visit.send_day_before_reminders(ctx, day)
        uow.repo.flush()
        records = [
            AuditRecord(
                subtype="operation",
                agent=REMINDER_AGENT,
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
