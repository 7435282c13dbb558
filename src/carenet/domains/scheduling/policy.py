"""The booking rules' numbers and the release rule from Settings: the one place that turns the
CARENET_BOOKING_* configuration into the values rules.py and sessions.py take."""

from __future__ import annotations

from datetime import date, time

from carenet.config import Settings
from carenet.domains.scheduling.rules import BookingPolicy
from carenet.domains.scheduling.sessions import ReleasePolicy


def booking_policy(settings: Settings) -> BookingPolicy:
    s = settings
    return BookingPolicy(
        window_days=s.booking_window_days,
        max_future_bookings=s.booking_max_future,
        noshow_limit=s.booking_noshow_limit,
        noshow_window_days=s.booking_noshow_window_days,
        suspension_days=s.booking_suspension_days,
        cancel_cutoff_minutes=s.booking_cancel_cutoff_minutes,
        reminder_ahead=s.queue_reminder_ahead,
    )


def release_policy(settings: Settings) -> ReleasePolicy:
    return ReleasePolicy(
        days_before=settings.booking_release_days_before,
        at=time.fromisoformat(settings.booking_release_time),
        pool_hours_before=settings.booking_pool_release_hours,
    )


def holidays(settings: Settings) -> frozenset[date]:
    """Settings.holidays (ISO dates, comma-separated; checked when Settings load)."""
    return frozenset(
        date.fromisoformat(d.strip()) for d in settings.holidays.split(",") if d.strip()
    )
