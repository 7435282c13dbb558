"""Latency benchmark: p50 and p95 of four everyday FHIR queries at a given data size.

First counts what the server holds (``<type>?_summary=count`` over the generated resource
types) and, below ``--resources``, loads generated patient Bundles until it is reached. Then,
after a warm-up, it times ``--samples`` sequential requests of each query over one pooled
connection:

- read by id: ``GET Patient/{id}``
- patient by identifier: ``GET Patient?identifier=<resident ID system>|<number>``
- a patient's observations in a date range, sorted: ``GET Observation?subject=Patient/{id}
  &date=ge2025-06-01&date=le2026-05-31&_sort=date``
- a practitioner's appointments on a day: ``GET Appointment?practitioner=Practitioner/{id}
  &date=2026-11-23``

and writes its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bench.generate import (
    APPOINTMENT_DAY,
    BENCH_PRACTITIONERS,
    BENCH_TAG,
    patient_bundles,
    practitioner_licence,
)
from bench.ingest import (
    RESULTS,
    command_line,
    console,
    http_headers,
    load_practitioners,
    machine,
    now,
    post_bundles,
    write_section,
)
from carenet.fhir import identifiers as ids

COUNTED_TYPES = (
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Appointment",
)
OBSERVATION_RANGE = ("2025-06-01", "2026-05-31")
LOAD_CHUNK = 500
# A request: path under the FHIR base and query parameters, in order (``date`` repeats; never
# put a query string into the path, httpx replaces it with ``params``).
Request = tuple[
    str, list[tuple[str, str]]
]  # patient Bundles generated and posted per progress step


@dataclass
class Timing:
    name: str
    query: str
    p50_ms: float
    p95_ms: float
    errors: int
    median_hits: float


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of non-empty values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def count_resources(client: httpx.Client) -> int:
    total = 0
    for resource_type in COUNTED_TYPES:
        response = client.get(resource_type, params={"_summary": "count"})
        if response.status_code != 200:
            response = client.get(resource_type, params={"_count": "0"})
        response.raise_for_status()
        total += int(response.json().get("total", 0))
    return total


def ensure_data(args: argparse.Namespace, client: httpx.Client) -> tuple[int, int]:
    """Load generated Bundles until the server holds ``args.resources``; (before, after)."""
    present = count_resources(client)
    missing = args.resources - present
    if missing <= 0:
        return present, present
    load_practitioners(args.base_url, args.token)
    # Each patient Bundle creates all its resources but the doctor, who exists already.
    n_patients = math.ceil(missing / max(1, args.resources_per_patient - 1))
    console.print(
        f"{present:,} resources present; loading {n_patients:,} patients (~{missing:,} resources)"
    )
    generator = patient_bundles(
        n_patients, seed=args.seed + present, resources_per_patient=args.resources_per_patient
    )
    loaded = 0
    while loaded < n_patients:
        chunk = [next(generator) for _ in range(min(LOAD_CHUNK, n_patients - loaded))]
        bodies = [orjson.dumps(b) for b in chunk]
        result = post_bundles(
            args.base_url,
            bodies,
            [len(b["entry"]) for b in chunk],
            concurrency=args.concurrency,
            token=args.token,
            label=f"loading {loaded + len(chunk):,}/{n_patients:,} patients",
        )
        if result.failures:
            raise SystemExit(f"loading failed: {result.failures[0]}")
        loaded += len(chunk)
    return present, count_resources(client)


def sample_targets(client: httpx.Client) -> tuple[list[tuple[str, str]], list[str]]:
    """(patient id, resident ID) pairs of bench patients, and bench practitioner ids."""
    tag = f"{BENCH_TAG['system']}|{BENCH_TAG['code']}"
    response = client.get("Patient", params={"_tag": tag, "_count": "200"})
    if response.status_code != 200 or not response.json().get("entry"):
        response = client.get("Patient", params={"_count": "200"})
    response.raise_for_status()
    patients = []
    for entry in response.json().get("entry", []):
        resource = entry["resource"]
        resident = next(
            (
                i["value"]
                for i in resource.get("identifier", [])
                if i.get("system") == ids.RESIDENT_ID
            ),
            None,
        )
        if resident:
            patients.append((resource["id"], resident))
    practitioners = []
    for i in range(BENCH_PRACTITIONERS):
        found = client.get(
            "Practitioner",
            params={"identifier": f"{ids.PRACTITIONER_LICENCE}|{practitioner_licence(i)}"},
        )
        found.raise_for_status()
        practitioners += [e["resource"]["id"] for e in found.json().get("entry", [])][:1]
    if not patients or not practitioners:
        raise SystemExit("no bench patients or practitioners found on the server")
    return patients, practitioners


def measure(
    client: httpx.Client,
    name: str,
    shape: str,
    make_request: Callable[[], Request],
    samples: int,
    warmup: int,
) -> Timing:
    durations: list[float] = []
    hits: list[int] = []
    errors = 0
    for k in range(warmup + samples):
        path, params = make_request()
        started = time.perf_counter()
        response = client.get(path, params=tuple(params))
        elapsed = time.perf_counter() - started
        if k < warmup:
            continue
        if response.status_code != 200:
            errors += 1
            continue
        durations.append(elapsed * 1000)
        body: dict[str, Any] = response.json()
        hits.append(len(body.get("entry", [])) if body.get("resourceType") == "Bundle" else 1)
    if not durations:
        return Timing(name, shape, math.nan, math.nan, errors, 0)
    return Timing(
        name,
        shape,
        percentile(durations, 50),
        percentile(durations, 95),
        errors,
        statistics.median(hits),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--base-url", default="http://127.0.0.1:8000/fhir", help="FHIR base of the running server"
    )
    p.add_argument(
        "--resources", type=int, default=100_000, help="data size to measure at (loads up to it)"
    )
    p.add_argument("--samples", type=int, default=500, help="timed requests per query")
    p.add_argument("--warmup", type=int, default=50, help="untimed requests per query first")
    p.add_argument("--resources-per-patient", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=2, help="Bundles in flight while loading")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument(
        "--token", default=os.environ.get("CARENET_BENCH_TOKEN"), help="Bearer token, if required"
    )
    p.add_argument("--results", default=str(RESULTS), help="markdown file to write the section to")
    p.add_argument(
        "--database-url",
        default=None,
        help="the server's database: when given, ANALYZE runs after loading (planner statistics)",
    )
    p.add_argument(
        "--label",
        default="",
        help="names this run's section of RESULTS.md, e.g. postgresql or sqlite",
    )
    p.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    rng = random.Random(args.seed)  # noqa: S311 - choosing samples, not secrets
    base = args.base_url.rstrip("/") + "/"
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(
        base_url=base, headers=http_headers(args.token), limits=limits, timeout=120
    ) as client:
        before, size = ensure_data(args, client)
        if args.database_url:
            # Fresh planner statistics after the load, as `carenet load` does.
            from carenet.store.engine import build_engine
            from carenet.store.maintenance import analyze

            engine = build_engine(args.database_url)
            analyze(engine)
            engine.dispose()
        patients, practitioners = sample_targets(client)
        low, high = OBSERVATION_RANGE
        day = APPOINTMENT_DAY.isoformat()
        queries: list[tuple[str, str, Callable[[], Request]]] = [
            ("read by id", "GET Patient/{id}", lambda: (f"Patient/{rng.choice(patients)[0]}", [])),
            (
                "patient by identifier",
                "GET Patient?identifier=<resident ID system>|{number}",
                lambda: (
                    "Patient",
                    [("identifier", f"{ids.RESIDENT_ID}|{rng.choice(patients)[1]}")],
                ),
            ),
            (
                "observations of a patient in a date range, sorted",
                f"GET Observation?subject=Patient/{{id}}&date=ge{low}&date=le{high}&_sort=date",
                lambda: (
                    "Observation",
                    [
                        ("subject", f"Patient/{rng.choice(patients)[0]}"),
                        ("date", f"ge{low}"),
                        ("date", f"le{high}"),
                        ("_sort", "date"),
                    ],
                ),
            ),
            (
                "appointments of a practitioner on a day",
                f"GET Appointment?practitioner=Practitioner/{{id}}&date={day}",
                lambda: (
                    "Appointment",
                    [("practitioner", f"Practitioner/{rng.choice(practitioners)}"), ("date", day)],
                ),
            ),
        ]
        timings = []
        for name, shape, make_request in queries:
            timing = measure(client, name, shape, make_request, args.samples, args.warmup)
            timings.append(timing)
            print(
                f"{name}: p50 {timing.p50_ms:.1f} ms, p95 {timing.p95_ms:.1f} ms "
                f"({timing.errors} errors, median {timing.median_hits:g} results)"
            )

    if not args.no_write:
        from pathlib import Path

        rows = "\n".join(
            f"| {t.name} | `{t.query}` | {t.p50_ms:.1f} | {t.p95_ms:.1f} | {t.median_hits:g} | {t.errors} |"
            for t in timings
        )
        write_section(
            f"bench.latency.{args.label}" if args.label else "bench.latency",
            f"""## Query latency at {size:,} resources{f" ({args.label})" if args.label else ""}

p50 / p95 over {args.samples} sequential requests per query after {args.warmup} warm-up requests,
one keep-alive connection; {size:,} resources on the server ({before:,} before loading).

- Date: {now()}
- Machine: {machine()}
- Server: {args.base_url}
- Command: `{command_line("bench.latency", args_list)}`

| query | request | p50 ms | p95 ms | median results | errors |
|---|---|---|---|---|---|
{rows}
""",
            Path(args.results),
        )
    return 1 if any(t.errors for t in timings) else 0


if __name__ == "__main__":
    raise SystemExit(main())
