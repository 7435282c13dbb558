"""Ingest benchmark: transaction Bundles POSTed to a running server against bare inserts.

Each run POSTs ``--patients`` generated patient Bundles to ``--base-url`` (``C`` at a time over a
pooled httpx client) and then inserts the very same resource JSON into a one-column table
``bench_bare(content text)`` of the server's database (``--database-url``): one executemany and
one transaction per Bundle-sized batch, ``C`` connections. It reports resources per second for
both and their ratio (how much of the bare database write rate the server keeps), medians over
``--repeat`` runs, and writes its section of bench/RESULTS.md. The table is created and dropped
by this script. Helpers for loading and reporting are shared with bench.latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.generate import patient_bundles, practitioner_bundle

RESULTS = Path(__file__).with_name("RESULTS.md")
FHIR_JSON = "application/fhir+json"
console = Console(stderr=True)


# --- loading -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    bundles: int = 0
    resources: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def http_headers(token: str | None) -> dict[str, str]:
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def post_bundles(
    base_url: str,
    bundles: Sequence[bytes],
    entry_counts: Sequence[int],
    *,
    concurrency: int,
    token: str | None = None,
    label: str = "POST /fhir",
    progress: bool = True,
) -> LoadResult:
    """POST serialized transaction Bundles, ``concurrency`` in flight; times the whole batch."""
    return asyncio.run(
        _post_bundles(base_url, bundles, entry_counts, concurrency, token, label, progress)
    )


async def _post_bundles(
    base_url: str,
    bundles: Sequence[bytes],
    entry_counts: Sequence[int],
    concurrency: int,
    token: str | None,
    label: str,
    show_progress: bool,
) -> LoadResult:
    result = LoadResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    next_index = 0
    with _progress(show_progress) as progress:
        task = progress.add_task(label, total=len(bundles))
        async with httpx.AsyncClient(
            limits=limits, timeout=300, headers=http_headers(token)
        ) as client:

            async def worker() -> None:
                nonlocal next_index
                while next_index < len(bundles):
                    i = next_index
                    next_index += 1
                    try:
                        response = await client.post(base_url.rstrip("/"), content=bundles[i])
                        ok = response.status_code == 200
                        if ok:
                            result.resources += entry_counts[i]
                            result.bundles += 1
                        else:
                            result.failures.append(
                                f"bundle {i}: HTTP {response.status_code} {response.text[:300]}"
                            )
                    except httpx.HTTPError as exc:
                        result.failures.append(f"bundle {i}: {type(exc).__name__}: {exc}")
                    progress.advance(task)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            result.seconds = time.perf_counter() - started
    return result


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
    )


def load_practitioners(base_url: str, token: str | None) -> None:
    """Create the fixed bench practitioners once, before concurrent patient Bundles refer to them."""
    body = orjson.dumps(practitioner_bundle())
    response = httpx.post(
        base_url.rstrip("/"), content=body, headers=http_headers(token), timeout=120
    )
    if response.status_code != 200:
        raise SystemExit(
            f"loading bench practitioners failed: HTTP {response.status_code} {response.text[:500]}"
        )


def serialize(bundles: Iterable[dict[str, Any]]) -> tuple[list[bytes], list[int], list[list[str]]]:
    """Bundles as request bodies, their entry counts, and each entry's resource JSON."""
    bodies, counts, contents = [], [], []
    for bundle in bundles:
        bodies.append(orjson.dumps(bundle))
        counts.append(len(bundle["entry"]))
        contents.append([orjson.dumps(e["resource"]).decode() for e in bundle["entry"]])
    return bodies, counts, contents


# --- bare-insert baseline ------------------------------------------------------------------


def bare_insert(database_url: str, batches: Sequence[list[str]], *, concurrency: int) -> LoadResult:
    """Insert the resource JSON into ``bench_bare(content text)``: one executemany and one
    transaction per batch, ``concurrency`` threads with a connection each. Creates and drops
    the table."""
    from sqlalchemy import text

    from carenet.store.engine import build_engine

    engine = build_engine(database_url)
    result = LoadResult()
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_bare"))
            conn.execute(text("CREATE TABLE bench_bare (content text)"))
        insert = text("INSERT INTO bench_bare (content) VALUES (:content)")
        lock = threading.Lock()
        next_index = 0

        def worker() -> None:
            nonlocal next_index
            with engine.connect() as conn:
                while True:
                    with lock:
                        i = next_index
                        next_index += 1
                    if i >= len(batches):
                        return
                    with conn.begin():
                        conn.execute(insert, [{"content": c} for c in batches[i]])
                    with lock:
                        result.resources += len(batches[i])
                        result.bundles += 1

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result.seconds = time.perf_counter() - started
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_bare"))
        engine.dispose()
    return result


# --- reporting -----------------------------------------------------------------------------


def machine() -> str:
    """nproc, CPU model and memory of this machine, one line."""
    cpu = platform.processor() or platform.machine()
    memory = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"nproc {nproc}, {cpu}, {memory} RAM, Python {platform.python_version()}, {platform.system()}"


def database_label(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return url.render_as_string(hide_password=True)


def now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def command_line(module: str, argv: Sequence[str]) -> str:
    """The command as typed: ``carenet bench ingest ...`` or ``python -m bench.ingest ...``."""
    if Path(sys.argv[0]).name == "carenet":
        return f"carenet bench {module.rsplit('.', 1)[-1]} {shlex.join(argv)}".rstrip()
    return f"python -m {module} {shlex.join(argv)}".rstrip()


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section of RESULTS.md (between its markers), or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}\n"
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(existing):
        updated = pattern.sub(lambda _m: block, existing)
    else:
        updated = existing.rstrip() + "\n\n" + block
    path.write_text(updated, encoding="utf-8")


# --- main ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--base-url", default="http://127.0.0.1:8000/fhir", help="FHIR base of the running server"
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="the server's database, for the bare-insert baseline (default: CARENET_DATABASE_URL / Settings)",
    )
    p.add_argument("--patients", type=int, default=200, help="patient Bundles per run")
    p.add_argument("--resources-per-patient", type=int, default=20)
    p.add_argument(
        "--concurrency", type=int, default=2, help="Bundles (and baseline batches) in flight"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs; medians are reported")
    p.add_argument("--seed", type=int, default=2026, help="run r uses seed + r")
    p.add_argument(
        "--token", default=os.environ.get("CARENET_BENCH_TOKEN"), help="Bearer token, if required"
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the bare-insert baseline")
    p.add_argument(
        "--results", type=Path, default=RESULTS, help="markdown file to write the section to"
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
    database_url = args.database_url
    if database_url is None and not args.no_baseline:
        from carenet.config import get_settings

        database_url = get_settings().database_url

    load_practitioners(args.base_url, args.token)
    runs: list[tuple[LoadResult, LoadResult | None]] = []
    for r in range(args.repeat):
        bodies, counts, contents = serialize(
            patient_bundles(
                args.patients, seed=args.seed + r, resources_per_patient=args.resources_per_patient
            )
        )
        server = post_bundles(
            args.base_url,
            bodies,
            counts,
            concurrency=args.concurrency,
            token=args.token,
            label=f"run {r + 1}: POST",
        )
        if server.failures:
            console.print(
                f"[red]{len(server.failures)} bundles failed[/red]; first: {server.failures[0]}"
            )
        bare = (
            None
            if args.no_baseline
            else bare_insert(database_url, contents, concurrency=args.concurrency)
        )
        runs.append((server, bare))
        line = f"run {r + 1}: server {server.rate:,.0f} resources/s ({server.resources} in {server.seconds:.2f} s)"
        if bare is not None:
            line += (
                f"; bare insert {bare.rate:,.0f} resources/s; ratio {server.rate / bare.rate:.3f}"
            )
        print(line)

    server_rate = statistics.median(s.rate for s, _ in runs)
    bare_rates = [b.rate for _, b in runs if b is not None]
    bare_rate = statistics.median(bare_rates) if bare_rates else None
    ratio = (
        statistics.median(s.rate / b.rate for s, b in runs if b is not None and b.rate)
        if bare_rates
        else None
    )
    failures = sum(len(s.failures) for s, _ in runs)
    print(f"median over {args.repeat} runs: server {server_rate:,.0f} resources/s", end="")
    if bare_rate is not None and ratio is not None:
        print(f", bare insert {bare_rate:,.0f} resources/s, server/bare {ratio:.3f} ({ratio:.1%})")
    else:
        print()

    if not args.no_write:
        rows = "\n".join(
            f"| {i + 1} | {s.resources} | {s.seconds:.2f} | {s.rate:,.0f} | "
            + (
                f"{b.rate:,.0f} | {s.rate / b.rate:.3f} |"
                if b is not None and b.rate
                else "- | - |"
            )
            for i, (s, b) in enumerate(runs)
        )
        figure = f"**{server_rate:,.0f} resources/s** through the FHIR API"
        if bare_rate is not None and ratio is not None:
            figure += f"; bare insert {bare_rate:,.0f} resources/s; server/bare **{ratio:.3f}** ({ratio:.1%})"
        write_section(
            f"bench.ingest.{args.label}" if args.label else "bench.ingest",
            f"""## Ingest: transaction Bundles vs. bare inserts{f" ({args.label})" if args.label else ""}

{figure} (medians over {args.repeat} runs; {failures} failed bundles).

- Date: {now()}
- Machine: {machine()}
- Server: {args.base_url}; database: {database_label(database_url) if database_url else "not measured"}
- Load: {args.patients} patient Bundles of {args.resources_per_patient} resources per run, concurrency {args.concurrency}
- Command: `{command_line("bench.ingest", args_list)}`

| run | resources | seconds | server resources/s | bare resources/s | server/bare |
|---|---|---|---|---|---|
{rows}
""",
            args.results,
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
