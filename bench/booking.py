"""Booking benchmark: a release-time storm (放号) on ``Appointment/$book`` through a running server.

Each run seeds, straight into the server's database and untimed, a fresh Schedule of one
doctor and ``--patients`` real-name verified patients with a bearer token each; the
institution admin publishes the slots with ``Schedule/$generate``. Then every patient asks for
one slot at once (patient i wants slot i mod ``--slots``, so each single-place slot has
``patients / slots`` contenders), in a shuffled order, ``--concurrency`` requests in flight.
It reports requests handled per second, bookings, refusals by code and latency percentiles,
checks the outcome in the database (one booking per place, each Slot's quota count equal to
its active appointments, nobody booked twice, the same appointments as the 200 responses), and
writes its section of bench/RESULTS.md. Medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import secrets
import ssl
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.ingest import RESULTS, command_line, console, database_label, machine, now, write_section
from bench.latency import percentile
from carenet.domains.scheduling.model import QUOTA, RELEASE, owner_tag, session_extension
from carenet.domains.scheduling.sessions import SessionTemplate
from carenet.fhir.identifiers import make_resident_id

FHIR_JSON = "application/fhir+json"
# Two sessions a day of 10-minute single-place slots: 48 slots a day, so 100 slots take the
# first three days from tomorrow, all released (7 days before, 08:00) and within the window.
SESSIONS = ((dtime(8, 0), dtime(12, 0)), (dtime(13, 30), dtime(17, 30)))
SLOT_MINUTES = 10
SLOTS_PER_DAY = (
    sum(
        (datetime.combine(date.min, end) - datetime.combine(date.min, start)).seconds // 60
        for start, end in SESSIONS
    )
    // SLOT_MINUTES
)
ACTIVE = ("arrived", "booked", "pending", "proposed")  # Appointment.status holding a place
FULL = "APPT-SLOT-FULL"
SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"
SEED_CHUNK = 50  # patients per seeding transaction
TARGET = {"requests_per_s": 500.0, "p99_ms": 300.0}


# --- pure helpers --------------------------------------------------------------------------


def session_templates(capacity: int = 1) -> list[SessionTemplate]:
    """The bench doctor's week: SESSIONS every day, 10-minute slots of ``capacity`` places."""
    return [
        SessionTemplate(
            weekday=d,
            start=start,
            end=end,
            slot_minutes=SLOT_MINUTES,
            capacity=capacity,
            service_type="general",
            fee_fen=1000,
        )
        for d in range(1, 8)
        for start, end in SESSIONS
    ]


def days_for(slots: int) -> int:
    """Days of slots to generate so that at least ``slots`` exist."""
    return max(1, math.ceil(slots / SLOTS_PER_DAY))


def wanted_slot(patient: int, slots: int) -> int:
    """The slot patient ``patient`` asks for: round robin, so every slot has the same crowd."""
    return patient % slots


def identity(k: int, base: int) -> tuple[str, str, str]:
    """The ``k``-th bench patient of an invocation whose random ``base`` is given: (mobile
    number, resident ID, name). Distinct for distinct ``k`` up to 10 million; ``base`` makes
    clashes with an earlier invocation on the same database unlikely."""
    number = (base + k) % 10**8
    phone = f"139{number:08d}"
    birth = date(1950, 1, 1) + timedelta(days=(base + k) % 20000)
    rid = make_resident_id("330102", birth, (base // 20000 + k // 20000) % 1000)
    rng = random.Random(base + k)  # noqa: S311 - names, not secrets
    name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)
    return phone, rid, name


def refusal_codes(body: Any) -> tuple[str, ...]:
    """The coded reasons of an OperationOutcome (``issue.details.coding.code``)."""
    if not isinstance(body, dict):
        return ()
    return tuple(
        str(c.get("code"))
        for issue in body.get("issue") or []
        for c in (issue.get("details") or {}).get("coding") or []
        if c.get("code")
    )


def quota_counts(slot: Mapping[str, Any]) -> tuple[int, int]:
    """(booked, capacity) summed over a Slot's quota extensions."""
    booked = capacity = 0
    for q in slot.get("extension") or []:
        if q.get("url") != QUOTA:
            continue
        for part in q.get("extension") or []:
            if part.get("url") == "booked":
                booked += int(part.get("valueUnsignedInt", 0))
            elif part.get("url") == "capacity":
                capacity += int(part.get("valueUnsignedInt", 0))
    return booked, capacity


def patient_of(appointment: Mapping[str, Any]) -> str | None:
    for p in appointment.get("participant") or []:
        ref = (p.get("actor") or {}).get("reference")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref
    return None


def slot_of(appointment: Mapping[str, Any]) -> str | None:
    refs = [s.get("reference") for s in appointment.get("slot") or []]
    return refs[0] if refs and isinstance(refs[0], str) else None


@dataclass(frozen=True)
class Attempt:
    """One $book request: who asked for which slot, and what came back."""

    patient: str  # "Patient/<id>"
    slot: str  # "Slot/<id>"
    status: int  # HTTP status; 0 when no response came
    latency_ms: float
    codes: tuple[str, ...] = ()
    appointment: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass
class Tally:
    booked: int = 0
    refusals: Counter[str] = field(default_factory=Counter)  # code -> count (4xx)
    errors: Counter[str] = field(default_factory=Counter)  # "HTTP 500", "ReadTimeout", ...

    @property
    def other(self) -> int:
        """Everything that is neither a booking nor a slot-full refusal."""
        return sum(self.errors.values()) + sum(n for c, n in self.refusals.items() if c != FULL)


def tally(attempts: Sequence[Attempt]) -> Tally:
    t = Tally()
    for a in attempts:
        if a.status == 200:
            t.booked += 1
        elif 400 <= a.status < 500:
            t.refusals["+".join(a.codes) or f"HTTP {a.status}"] += 1
        else:
            t.errors[a.error or f"HTTP {a.status}"] += 1
    return t


def check_outcome(
    attempts: Sequence[Attempt],
    slots: Mapping[str, Mapping[str, Any]],
    active: Sequence[Mapping[str, Any]],
) -> list[str]:
    """Every way the stored outcome is wrong; [] when it is right.

    ``slots``: the storm's Slots as stored now, by "Slot/<id>"; ``active``: every active
    Appointment of the storm's patients (whatever slot). A place is never given twice, every
    place asked for by someone is taken (each slot is wanted by more patients than it has
    places), each Slot's quota count equals its active appointments, nobody holds two
    bookings, and the appointments stored are exactly those the 200 responses returned, each
    for the patient and slot asked."""
    problems: list[str] = []
    per_slot = Counter(slot_of(a) for a in active)
    wanted = Counter(a.slot for a in attempts)
    for ref, slot in slots.items():
        booked, capacity = quota_counts(slot)
        n = per_slot.get(ref, 0)
        if n > capacity:
            problems.append(f"{ref}: {n} active appointments for {capacity} places")
        if booked != n:
            problems.append(f"{ref}: quota says {booked} booked, {n} active appointments")
        if n < min(capacity, wanted.get(ref, 0)):
            problems.append(f"{ref}: {n} booked of {capacity} places wanted by {wanted[ref]}")
        if capacity and n == capacity and slot.get("status") != "busy":
            problems.append(f"{ref}: full but status {slot.get('status')!r}")
    strays = sorted(str(s) for s in per_slot if s not in slots)
    if strays:
        problems.append(f"active appointments in slots outside the storm: {strays[:5]}")
    twice = sorted(p for p, n in Counter(patient_of(a) for a in active).items() if n > 1 and p)
    if twice:
        problems.append(f"{len(twice)} patients hold more than one booking: {twice[:5]}")
    answered = {
        str(a.appointment.get("id")): a for a in attempts if a.status == 200 and a.appointment
    }
    stored = {str(a.get("id")): a for a in active}
    if answered.keys() != stored.keys():
        problems.append(
            f"{len(answered)} bookings answered 200, {len(stored)} stored; "
            f"{len(answered.keys() - stored.keys())} answered but not stored, "
            f"{len(stored.keys() - answered.keys())} stored but not answered"
        )
    for appt_id, a in answered.items():
        appt = stored.get(appt_id)
        if appt is not None and (patient_of(appt), slot_of(appt)) != (a.patient, a.slot):
            problems.append(f"Appointment/{appt_id} is not for {a.patient} in {a.slot}")
    return problems


@dataclass
class RunResult:
    attempts: list[Attempt]
    seconds: float  # first request sent to last response
    problems: list[str]
    load: tuple[float, float]  # 1-minute load average before and after the storm
    client_cpu_ms: float = 0.0  # CPU this process spent sending and reading, per request

    @property
    def tally(self) -> Tally:
        return tally(self.attempts)

    @property
    def rate(self) -> float:
        return len(self.attempts) / self.seconds if self.seconds else 0.0

    def latency(self, q: float, status: int | None = None) -> float:
        values = [a.latency_ms for a in self.attempts if a.status and status in (None, a.status)]
        return percentile(values, q) if values else math.nan


# --- seeding (in the database, untimed) ----------------------------------------------------


@dataclass
class Clinic:
    """What every run shares: the hospital, the doctor's role and room, the app client and the
    institution admin's token (for $generate)."""

    organization: str
    role: str  # PractitionerRole id
    room: str  # Location id
    client_id: str
    admin_token: str


def mint(conn: Any, client_id: str, account_id: str | None, scope: str) -> str:
    """A bearer token as the authorization server stores it (by hash)."""
    from carenet.access.oauth_tokens import OAuthPolicy, store_token

    token = secrets.token_urlsafe(32)
    store_token(
        conn,
        OAuthPolicy(),
        int(time.time() * 1000),
        {"access_token": token, "token_type": "Bearer", "scope": scope},
        client_id=client_id,
        account_id=account_id,
        grant_type="authorization_code",
    )
    return token


def seed_clinic(store: Any, ctx: Any) -> Clinic:
    """A hospital, its institution admin, a verified doctor and a consulting room."""
    from carenet.access.accounts import register_staff
    from carenet.access.clients import create_client
    from carenet.access.practitioners import (
        ROLE_LICENCES,
        register_practitioner_role,
        verify_practitioner_role,
    )

    tag = uuid.uuid4().hex[:8]
    with store.unit_of_work() as uow:
        repo, conn = uow.repo, uow.repo.conn
        org = repo.create(
            "Organization", {"resourceType": "Organization", "name": f"压测医院 {tag}"}
        )
        admin = register_staff(
            conn,
            repo,
            ctx,
            role="institution_admin",
            login_name=f"bench-ia-{tag}",
            # Letters and digits always (the password rule); token_urlsafe alone sometimes
            # has no digit, and the run then failed at seeding.
            password=f"Bench{secrets.token_hex(12)}7",
            organization_ref=f"Organization/{org['id']}",
        )
        licence = uuid.uuid4().hex[:12]
        prac = repo.create(
            "Practitioner",
            {
                "resourceType": "Practitioner",
                "identifier": [{"system": ROLE_LICENCES["doctor"][0], "value": licence}],
                "name": [{"text": "压测 医生"}],
            },
        )
        role = register_practitioner_role(
            conn,
            repo,
            ctx,
            practitioner_ref=f"Practitioner/{prac['id']}",
            organization_ref=f"Organization/{org['id']}",
            role="doctor",
            licence_number=licence,
        )
        verify_practitioner_role(conn, repo, ctx, f"PractitionerRole/{role['id']}", admin.id)
        room = repo.create(
            "Location",
            {"resourceType": "Location", "name": "内科 1 诊室", "meta": owner_tag(org["id"])},
        )
        client_id, _ = create_client(
            conn,
            name=f"bench-booking-{tag}",
            scopes="user/*.cruds patient/*.cruds launch/patient",
            kind="public",
            redirect_uris=["http://localhost/cb"],
        )
        admin_token = mint(conn, client_id, admin.id, "user/*.cruds")
        uow.commit()
    return Clinic(org["id"], role["id"], room["id"], client_id, admin_token)


def create_schedule(store: Any, clinic: Clinic) -> str:
    """A new Schedule of the doctor, so that each run books slots nobody has touched."""
    schedule = {
        "resourceType": "Schedule",
        "meta": owner_tag(clinic.organization),
        "extension": [
            *(session_extension(t) for t in session_templates()),
            {
                "url": RELEASE,
                "extension": [
                    {"url": "daysBefore", "valueUnsignedInt": 7},
                    {"url": "time", "valueTime": "08:00:00"},
                    {"url": "poolHoursBefore", "valueUnsignedInt": 24},
                ],
            },
        ],
        "active": True,
        "actor": [
            {"reference": f"PractitionerRole/{clinic.role}"},
            {"reference": f"Location/{clinic.room}"},
        ],
    }
    with store.unit_of_work() as uow:
        schedule_id = str(uow.repo.create("Schedule", schedule)["id"])
        uow.commit()
    return schedule_id


def seed_patients(
    store: Any, ctx: Any, clinic: Clinic, n: int, *, first: int, base: int, label: str
) -> list[tuple[str, str]]:
    """``n`` patient accounts, real-name verified (which creates their Patient, with a mobile
    number for the booking SMS), and a bearer token each: [(Patient id, token)]."""
    from carenet.access.accounts import register_patient
    from carenet.access.realname import verify_real_name

    out: list[tuple[str, str]] = []
    with _progress() as progress:
        task = progress.add_task(label, total=n)
        for start in range(0, n, SEED_CHUNK):
            with store.unit_of_work() as uow:
                repo, conn = uow.repo, uow.repo.conn
                for k in range(first + start, first + min(n, start + SEED_CHUNK)):
                    phone, rid, name = identity(k, base)
                    account = register_patient(conn, ctx, phone=phone)
                    result = verify_real_name(conn, repo, ctx, account.id, name, rid)
                    pid = result.patient_ref.split("/", 1)[1]
                    patient = repo.read("Patient", pid)
                    patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
                    repo.update("Patient", pid, patient)
                    out.append((pid, mint(conn, clinic.client_id, account.id, "patient/*.cruds")))
                uow.commit()
            progress.update(task, completed=len(out))
    return out


def publish_slots(
    base_url: str, clinic: Clinic, schedule_id: str, n: int, tz: ZoneInfo
) -> list[str]:
    """``Schedule/$generate`` from tomorrow as the institution admin; the first ``n`` Slot ids
    by start time."""
    tomorrow = (datetime.now(tz) + timedelta(days=1)).date()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDate": tomorrow.isoformat()},
            {"name": "days", "valueInteger": days_for(n)},
        ],
    }
    response = httpx.post(
        f"{base_url.rstrip('/')}/Schedule/{schedule_id}/$generate",
        content=orjson.dumps(body),
        headers=_headers(clinic.admin_token),
        timeout=120,
    )
    if response.status_code != 200:
        raise SystemExit(f"$generate failed: HTTP {response.status_code} {response.text[:500]}")
    slots = [p["resource"] for p in response.json()["parameter"] if p["name"] == "slot"]
    if len(slots) < n:
        raise SystemExit(f"$generate made {len(slots)} slots, fewer than --slots {n}")
    slots.sort(key=lambda s: (s["start"], s["id"]))
    return [s["id"] for s in slots[:n]]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _headers(token: str) -> dict[str, str]:
    return {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}


# --- the storm -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Booking:
    patient: str  # "Patient/<id>"
    slot: str  # "Slot/<id>"
    body: bytes
    headers: Mapping[str, str]


def bookings(patients: Sequence[tuple[str, str]], slots: Sequence[str], seed: int) -> list[Booking]:
    """One $book request per patient for slot ``wanted_slot(i)``, in a shuffled sending order
    (arrivals at release time are not sorted by slot)."""
    out = []
    for i, (pid, token) in enumerate(patients):
        slot = f"Slot/{slots[wanted_slot(i, len(slots))]}"
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "slot", "valueReference": {"reference": slot}},
                {"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}},
            ],
        }
        out.append(Booking(f"Patient/{pid}", slot, orjson.dumps(params), _headers(token)))
    random.Random(seed).shuffle(out)  # noqa: S311 - an arrival order, not a secret
    return out


def storm(
    base_url: str, requests: Sequence[Booking], concurrency: int, client: str = "raw"
) -> tuple[list[Attempt], float, float]:
    """Send every request, ``concurrency`` in flight; (attempts in sending order, seconds from
    the first send to the last response, CPU seconds this process spent meanwhile)."""
    run = _storm_raw if client == "raw" and base_url.startswith("http://") else _storm
    cpu = time.process_time()
    attempts, seconds = asyncio.run(run(base_url, requests, concurrency))
    return attempts, seconds, time.process_time() - cpu


async def _storm(
    base_url: str, requests: Sequence[Booking], concurrency: int
) -> tuple[list[Attempt], float]:
    url = f"{base_url.rstrip('/')}/Appointment/$book"
    # One client of one connection per sender: a single pool of C connections costs httpx
    # ~9 ms of CPU per request at C = 100 (it rescans its queue on every event), which on a
    # 2-core machine is CPU taken from the server; one per sender costs ~1 ms. Built before
    # the clock starts; one TLS context for all (plain HTTP never uses it).
    tls = ssl.create_default_context()
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(limits=one, timeout=300, verify=tls)
        for _ in range(min(concurrency, len(requests)))
    ]
    attempts: list[Attempt | None] = [None] * len(requests)
    queue = iter(range(len(requests)))

    async def sender(client: httpx.AsyncClient) -> None:
        for i in queue:
            attempts[i] = await _send(client, url, requests[i])

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender(c) for c in clients))
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return [a for a in attempts if a is not None], seconds


async def _storm_raw(
    base_url: str, requests: Sequence[Booking], concurrency: int
) -> tuple[list[Attempt], float]:
    """The storm through plain HTTP/1.1 keep-alive connections, requests as prepared bytes.

    The load generator shares the machine with the server: httpx spends about 1.9 ms of CPU
    per request, which at 500 requests/s is a whole core of this 2-core machine taken from the
    server. Like wrk, this client does the least a client must (write the request, read the
    status line, headers and the Content-Length body) and costs about a tenth of that (the
    run reports its own CPU per request)."""
    u = httpx.URL(base_url)
    host, port = u.host, u.port or 80
    path = f"{u.raw_path.decode().rstrip('/')}/Appointment/$book"
    wire = [_wire(path, f"{host}:{port}", b) for b in requests]
    attempts: list[Attempt | None] = [None] * len(requests)
    queue = iter(range(len(requests)))
    conns = [
        await asyncio.open_connection(host, port) for _ in range(min(concurrency, len(requests)))
    ]

    async def sender(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        reader, writer = conn
        for i in queue:
            b = requests[i]
            started = time.perf_counter()
            try:
                writer.write(wire[i])
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                elapsed = (time.perf_counter() - started) * 1000
                attempts[i] = Attempt(b.patient, b.slot, 0, elapsed, error=type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            attempts[i] = _attempt(b, status, (time.perf_counter() - started) * 1000, body)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender(c) for c in conns))
    seconds = time.perf_counter() - started
    return [a for a in attempts if a is not None], seconds


def _wire(path: str, host: str, b: Booking) -> bytes:
    head = "".join(
        [f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"]
        + [f"{k}: {v}\r\n" for k, v in b.headers.items()]
        + [f"Content-Length: {len(b.body)}\r\n\r\n"]
    )
    return head.encode("latin-1") + b.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length (what the server sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = next(
        (
            int(v)
            for k, _, v in (ln.partition(b":") for ln in lines[1:])
            if k.lower() == b"content-length"
        ),
        None,
    )
    if length is None:
        raise ValueError("response without Content-Length")
    return status, await reader.readexactly(length)


def _attempt(b: Booking, status: int, elapsed: float, raw: bytes) -> Attempt:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if status == 200 and isinstance(body, dict):
        appointment = next(
            (p.get("resource") for p in body.get("parameter", []) if p["name"] == "appointment"),
            None,
        )
        return Attempt(b.patient, b.slot, 200, elapsed, appointment=appointment)
    return Attempt(b.patient, b.slot, status, elapsed, refusal_codes(body))


async def _send(client: httpx.AsyncClient, url: str, b: Booking) -> Attempt:
    started = time.perf_counter()
    try:
        response = await client.post(url, content=b.body, headers=dict(b.headers))
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return Attempt(b.patient, b.slot, 0, elapsed, error=type(exc).__name__)
    elapsed = (time.perf_counter() - started) * 1000
    return _attempt(b, response.status_code, elapsed, response.content)


# --- verification (in the database) --------------------------------------------------------


def stored_outcome(
    store: Any, slot_ids: Sequence[str], patient_ids: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The storm's Slots as stored, and every active Appointment of its patients."""
    with store.unit_of_work() as uow:
        repo = uow.repo
        slots = {f"Slot/{s}": repo.read("Slot", s) for s in slot_ids}
        active: dict[str, dict[str, Any]] = {}
        for i in range(0, len(patient_ids), 50):
            refs = ",".join(f"Patient/{p}" for p in patient_ids[i : i + 50])
            result = repo.search(
                "Appointment", [("patient", refs), ("status", ",".join(ACTIVE)), ("_count", "1000")]
            )
            active.update((str(a["id"]), a) for a in result.matches)
        # Whoever else may hold a place in these slots (the storm's patients should be alone).
        for i in range(0, len(slot_ids), 50):
            refs = ",".join(f"Slot/{s}" for s in slot_ids[i : i + 50])
            result = repo.search(
                "Appointment", [("slot", refs), ("status", ",".join(ACTIVE)), ("_count", "1000")]
            )
            active.update((str(a["id"]), a) for a in result.matches)
    return slots, list(active.values())


# --- main ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.booking", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--base-url", default="http://127.0.0.1:8000/fhir", help="FHIR base of the running server"
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="the server's database, for seeding and checking (default: CARENET_DATABASE_URL / Settings)",
    )
    p.add_argument("--patients", type=int, default=1000, help="patients, one $book each, per run")
    p.add_argument("--slots", type=int, default=100, help="single-place slots they race for")
    p.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="requests in flight (connections); see bench/README.md for the choice",
    )
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: raw HTTP/1.1 keep-alive (cheap, like wrk) or httpx",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs, each on new slots and patients")
    p.add_argument(
        "--seed", type=int, default=2026, help="run r shuffles the arrivals with seed + r"
    )
    p.add_argument("--results", default=str(RESULTS), help="markdown file to write the section to")
    p.add_argument("--label", default=None, help="section name suffix (default: the database kind)")
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    if args.patients < 1 or args.slots < 1 or args.concurrency < 1 or args.repeat < 1:
        raise SystemExit("--patients, --slots, --concurrency and --repeat must be at least 1")

    from sqlalchemy.engine import make_url

    from carenet.bootstrap import build_auth_context, build_store
    from carenet.config import get_settings
    from carenet.store.maintenance import analyze

    env = get_settings()
    database_url = args.database_url or env.database_url
    label = args.label or make_url(database_url).get_backend_name()
    # Same secrets and time zone as the server (same environment), this database.
    settings = env.model_copy(update={"database_url": database_url})
    tz = ZoneInfo(settings.timezone)
    store = build_store(settings)
    ctx = build_auth_context(settings)
    base = secrets.randbelow(10**8)
    background = os.getloadavg()  # before this process adds its own work
    runs: list[RunResult] = []
    try:
        clinic = seed_clinic(store, ctx)
        for r in range(args.repeat):
            schedule_id = create_schedule(store, clinic)
            patients = seed_patients(
                store,
                ctx,
                clinic,
                args.patients,
                first=r * args.patients,
                base=base,
                label=f"run {r + 1}: seeding patients",
            )
            # Planner statistics for the new rows, as `carenet load` does after a bulk load (a
            # server without autovacuum would otherwise plan the searches of $book blind).
            analyze(store.engine)
            slot_ids = publish_slots(args.base_url, clinic, schedule_id, args.slots, tz)
            requests = bookings(patients, slot_ids, args.seed + r)
            load_before = os.getloadavg()[0]
            attempts, seconds, cpu = storm(args.base_url, requests, args.concurrency, args.client)
            load_after = os.getloadavg()[0]
            slots, active = stored_outcome(store, slot_ids, [p for p, _ in patients])
            result = RunResult(
                attempts,
                seconds,
                check_outcome(attempts, slots, active),
                (load_before, load_after),
                cpu * 1000 / max(1, len(attempts)),
            )
            runs.append(result)
            _print_run(r + 1, result)
    finally:
        store.engine.dispose()

    summary = _summary(runs)
    print(
        f"median over {len(runs)} runs: {summary['rate']:,.0f} requests/s, "
        f"p50 {summary['p50']:.0f} ms, p95 {summary['p95']:.0f} ms, p99 {summary['p99']:.0f} ms; "
        f"booked {summary['booked']:.0f}, {FULL} {summary['full']:.0f}, other {summary['other']:.0f}; "
        f"{sum(1 for r in runs if r.problems)} runs with problems"
    )
    failed = any(r.problems or r.tally.other for r in runs)
    if not args.no_write:
        write_section(
            f"bench.booking.{label}",
            _markdown(args, args_list, label, database_url, runs, summary, background),
            Path(args.results),
        )
    return 1 if failed else 0


def _summary(runs: Sequence[RunResult]) -> dict[str, float]:
    return {
        "rate": statistics.median(r.rate for r in runs),
        "p50": statistics.median(r.latency(50) for r in runs),
        "p95": statistics.median(r.latency(95) for r in runs),
        "p99": statistics.median(r.latency(99) for r in runs),
        "booked": statistics.median(r.tally.booked for r in runs),
        "full": statistics.median(r.tally.refusals.get(FULL, 0) for r in runs),
        "other": statistics.median(r.tally.other for r in runs),
    }


def _print_run(n: int, r: RunResult) -> None:
    t = r.tally
    refusals = ", ".join(f"{c} {k}" for c, k in sorted(t.refusals.items())) or "none"
    errors = ", ".join(f"{c} {k}" for c, k in sorted(t.errors.items())) or "none"
    print(
        f"run {n}: {len(r.attempts)} requests in {r.seconds:.2f} s = {r.rate:,.0f} requests/s; "
        f"booked {t.booked}; refused: {refusals}; errors: {errors}; "
        f"latency p50 {r.latency(50):.0f} ms, p95 {r.latency(95):.0f} ms, p99 {r.latency(99):.0f} ms "
        f"(booked p50 {r.latency(50, 200):.0f}/p99 {r.latency(99, 200):.0f} ms, refused p50 "
        f"{r.latency(50, 409):.0f}/p99 {r.latency(99, 409):.0f} ms); load {r.load[0]:.2f} -> {r.load[1]:.2f}; "
        f"client CPU {r.client_cpu_ms:.2f} ms/request"
    )
    if r.problems:
        console.print(f"[red]run {n}: {len(r.problems)} problems[/red]")
        for p in r.problems[:20]:
            console.print(f"  {p}")
    else:
        print(f"run {n}: outcome checked: correct")


def _markdown(
    args: argparse.Namespace,
    args_list: Sequence[str],
    label: str,
    database_url: str,
    runs: Sequence[RunResult],
    s: Mapping[str, float],
    background: tuple[float, float, float],
) -> str:
    met = s["rate"] >= TARGET["requests_per_s"] and s["p99"] < TARGET["p99_ms"]
    correct = all(not r.problems for r in runs)
    rows = "\n".join(
        f"| {i + 1} | {len(r.attempts)} | {r.seconds:.2f} | {r.rate:,.0f} | {r.tally.booked} | "
        f"{r.tally.refusals.get(FULL, 0)} | {r.tally.other} | {r.latency(50):.0f} | "
        f"{r.latency(95):.0f} | {r.latency(99):.0f} | {'yes' if not r.problems else 'NO'} | "
        f"{r.load[0]:.2f} |"
        for i, r in enumerate(runs)
    )
    return f"""## Booking: release-time storm ({label})

**{s["rate"]:,.0f} booking requests/s** handled, latency p50 {s["p50"]:.0f} ms, p95 {s["p95"]:.0f} ms, **p99 {s["p99"]:.0f} ms**;
{s["booked"]:.0f} booked, {s["full"]:.0f} refused {FULL}, {s["other"]:.0f} other (medians over {len(runs)} runs).
Outcome in the database: {"correct in every run" if correct else "WRONG in some run (see the table)"}.
Target (issue 4): >= {TARGET["requests_per_s"]:.0f} requests/s and p99 < {TARGET["p99_ms"]:.0f} ms with exactly the places booked: {"met" if met and correct else "not met"}.

- Date: {now()}
- Machine: {machine()}
- Server: {args.base_url}; database: {database_label(database_url)}; threads per server process
  (CARENET_REQUEST_THREADS): {os.environ.get("CARENET_REQUEST_THREADS", "not set here (default 4)")}
- Load generator: {args.client} (its own CPU: {statistics.median(r.client_cpu_ms for r in runs):.2f} ms per request, median)
- Storm: {args.patients} real-name verified patients with their own token per run, each POSTing
  one `Appointment/$book` for one of {args.slots} single-place slots ({args.patients // args.slots} per
  slot), shuffled, {args.concurrency} in flight; new Schedule and patients each run
- Load average before the first run: {background[0]:.2f} / {background[1]:.2f} / {background[2]:.2f} (1 / 5 / 15 min)
- Command: `{command_line("bench.booking", args_list)}`

| run | requests | seconds | requests/s | booked | {FULL} | other | p50 ms | p95 ms | p99 ms | correct | load at start |
|---|---|---|---|---|---|---|---|---|---|---|---|
{rows}
"""


if __name__ == "__main__":
    raise SystemExit(main())
