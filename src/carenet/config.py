"""Settings: the one place that reads the environment (variables prefixed ``CARENET_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_MASTER_SECRET = "carenet-development-master-secret-not-for-production"  # noqa: S105 - refused in production


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARENET_", env_file=None, extra="ignore")

    env: Literal["development", "demo", "test", "production"] = "development"
    # SQLite file in the working directory by default; or postgresql://user@host:port/db.
    database_url: str = "sqlite:///carenet.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # The public base of this node, used in fullUrls and paging links.
    base_url: str = "http://127.0.0.1:8000"
    # Stable name of this node in a region (meta.source of everything written here).
    node_id: str = "local"
    timezone: str = "Asia/Shanghai"
    search_default_count: Annotated[int, Field(ge=1)] = 20
    search_max_count: Annotated[int, Field(ge=1)] = 1000
    # Largest request body accepted, in bytes (a transaction Bundle of a few thousand entries).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    # Threads per server process running FHIR requests (each holds a database connection while
    # it works). Python runs one thread at a time, so threads beyond what keeps the process
    # busy while others wait for the database only queue for the interpreter lock (the booking
    # storm's thread sweep is in docs/fhir-server.md#serving). A long search holds one thread.
    request_threads: Annotated[int, Field(ge=1, le=200)] = 4
    log_level: str = "INFO"
    # Root of all server-side keys (private signing keys, field encryption, keyed hashes).
    # The default is usable only in development, demo and test; production refuses it.
    master_secret: str = DEV_MASTER_SECRET
    # Parallel audit hash chains (see docs/audit.md): more chains, less lock contention.
    audit_chains: Annotated[int, Field(ge=1, le=64)] = 8
    # OAuth2 / SMART (docs/oauth-smart.md) and portal sessions.
    oauth_access_token_ttl_seconds: Annotated[int, Field(ge=60)] = 3600
    oauth_refresh_token_ttl_seconds: Annotated[int, Field(ge=60)] = 30 * 24 * 3600
    oauth_code_ttl_seconds: Annotated[int, Field(ge=10, le=600)] = 120
    session_ttl_seconds: Annotated[int, Field(ge=60)] = 8 * 3600
    login_ticket_ttl_seconds: Annotated[int, Field(ge=30)] = 300
    # Time-slot appointments (分时段预约, docs/scheduling.md): province- and hospital-specific
    # numbers, so configuration with the defaults the issue states.
    booking_window_days: Annotated[int, Field(ge=1, le=180)] = 14
    booking_max_future: Annotated[int, Field(ge=1)] = 5
    booking_noshow_limit: Annotated[int, Field(ge=1)] = 3
    booking_noshow_window_days: Annotated[int, Field(ge=1)] = 90
    booking_suspension_days: Annotated[int, Field(ge=0)] = 30
    booking_cancel_cutoff_minutes: Annotated[int, Field(ge=0)] = 120
    queue_reminder_ahead: Annotated[int, Field(ge=1)] = 3
    # 放号: slots open this many days before the visit day at this local time (HH:MM).
    booking_release_days_before: Annotated[int, Field(ge=0, le=180)] = 7
    booking_release_time: str = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    # Unused reserved quota (on-site, referral, contract) opens to every channel this long before.
    booking_pool_release_hours: Annotated[int, Field(ge=0)] = 24
    # Public holidays on which no slots are generated (ISO dates, comma-separated).
    holidays: str = ""

    @model_validator(mode="after")
    def _check_holidays(self) -> Settings:
        from datetime import date

        for day in (d.strip() for d in self.holidays.split(",")):
            if day:
                try:
                    date.fromisoformat(day)
                except ValueError:
                    raise ValueError(
                        f"CARENET_HOLIDAYS: {day!r} is not a date (YYYY-MM-DD, comma-separated)"
                    ) from None
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.env == "production" and self.master_secret == DEV_MASTER_SECRET:
            raise ValueError(
                "CARENET_MASTER_SECRET must be set to a secret of your own in production"
            )
        if self.env == "production" and len(self.master_secret) < 32:
            raise ValueError("CARENET_MASTER_SECRET must be at least 32 characters in production")
        return self

    @property
    def fhir_base(self) -> str:
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def node_source(self) -> str:
        return f"urn:carenet:node:{self.node_id}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
