"""CPU cost of ingest: transaction Bundles through the ASGI app in this process, CPU seconds per
1,000 resources.

Wall-clock throughput on a shared 2-core machine swings with whatever else runs; the CPU time
the server's Python process spends per resource does not (much). This script builds the app
(``bootstrap.build_app``, as ``carenet serve`` does) on a fresh database, gets a
backend-service token, loads the bench practitioners and some warm-up Bundles, and then POSTs
generated patient Bundles one at a time straight into the ASGI app — the same routing, body
parsing, access control, validation, indexing, audit chain and commit as over HTTP, without
sockets or an HTTP client. Per run it reports the process CPU time (``time.process_time``, all
threads) and, on PostgreSQL, the CPU time of this database's backends (from /proc, when
readable), each per 1,000 resources; then the medians. ``--cprofile PATH`` writes a cProfile
of the timed runs (handlers then run inline in the profiled thread instead of the thread pool)."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import orjson

from bench.generate import patient_bundles, practitioner_bundle

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BASE = "http://127.0.0.1:8000"


class _InlineExecutor(Executor):
    """Runs what is submitted at once, in the submitting thread (for cProfile)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            future.set_exception(exc)
        return future


class AsgiCaller:
    """Minimal HTTP/1.1 requests into an ASGI app, in one event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self._request(method, path, body, headers))

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode()), (b"host", b"127.0.0.1:8000")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


def _backend_cpu(engine: Any, database: str) -> float | None:
    """User+system CPU seconds of every PostgreSQL backend on ``database`` (None: unreadable)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        pids = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": database},
            )
        ]
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return None
    return total


def _token(store: Any, caller: AsgiCaller) -> str:
    from carenet.access.clients import create_client

    scope = "system/*.cruds"
    with store.engine.begin() as conn:
        client_id, secret = create_client(
            conn, name=f"profile-{uuid.uuid4().hex[:8]}", scopes=scope
        )
    import base64

    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    status, body = caller.request(
        "POST",
        "/auth/token",
        f"grant_type=client_credentials&scope={scope}".encode(),
        {"content-type": "application/x-www-form-urlencoded", "authorization": f"Basic {basic}"},
    )
    if status != 200:
        raise SystemExit(f"token request failed: {status} {body[:300]!r}")
    return str(orjson.loads(body)["access_token"])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile_ingest", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--patients", type=int, default=100, help="patient Bundles per timed run")
    p.add_argument("--resources-per-patient", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5, help="timed runs; medians are reported")
    p.add_argument("--warmup", type=int, default=30, help="untimed Bundles first")
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument(
        "--store", choices=("postgresql", "sqlite"), default="postgresql", help="a fresh database"
    )
    p.add_argument("--pg-admin", default=PG_ADMIN, help="where the fresh PostgreSQL database goes")
    p.add_argument("--cprofile", type=Path, default=None, help="write a cProfile of timed runs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from sqlalchemy import text

    from carenet.bootstrap import build_app
    from carenet.config import Settings
    from carenet.store.engine import build_engine
    from carenet.store.migrate import upgrade

    tmp = tempfile.TemporaryDirectory()
    admin = None
    pg_name = None
    if args.store == "postgresql":
        pg_name = f"carenet_profile_{os.getpid()}"
        admin = build_engine(args.pg_admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = f"{args.pg_admin.rsplit('/', 1)[0]}/{pg_name}"
    else:
        url = f"sqlite:///{tmp.name}/profile.db"
    try:
        upgrade(url)
        settings = Settings(database_url=url, base_url=BASE, node_id="profile", env="test")
        app = build_app(settings)
        store = app.state.store
        caller = AsgiCaller(app)
        headers = {
            "content-type": "application/fhir+json",
            "accept": "application/fhir+json",
            "authorization": f"Bearer {_token(store, caller)}",
        }

        def post(bundles: list[bytes]) -> None:
            for body in bundles:
                status, out = caller.request("POST", "/fhir", body, headers)
                if status != 200:
                    raise SystemExit(f"bundle failed: {status} {out[:500]!r}")

        post([orjson.dumps(practitioner_bundle())])
        post(
            [
                orjson.dumps(b)
                for b in patient_bundles(
                    args.warmup,
                    seed=args.seed - 1,
                    resources_per_patient=args.resources_per_patient,
                )
            ]
        )
        profiler = None
        if args.cprofile:
            import cProfile

            # cProfile sees only its own thread: run the FHIR handler inline in this one.
            app.fhir_executor = _InlineExecutor()
            profiler = cProfile.Profile(time.thread_time)  # CPU, not waiting
        cpu_ms: list[float] = []
        db_ms: list[float] = []
        for r in range(args.repeat):
            bundles = list(
                patient_bundles(
                    args.patients,
                    seed=args.seed + r,
                    resources_per_patient=args.resources_per_patient,
                )
            )
            bodies = [orjson.dumps(b) for b in bundles]
            n = sum(len(b["entry"]) for b in bundles)
            db0 = _backend_cpu(admin, pg_name) if admin is not None else None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            post(bodies)
            if profiler is not None:
                profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            db1 = _backend_cpu(admin, pg_name) if admin is not None else None
            cpu_ms.append(cpu * 1e6 / n)
            line = (
                f"run {r + 1}: {n} resources, wall {wall:.2f} s ({n / wall:,.0f}/s), "
                f"server CPU {cpu:.2f} s = {cpu_ms[-1]:.0f} ms per 1,000 resources"
            )
            if db0 is not None and db1 is not None:
                db_ms.append((db1 - db0) * 1e6 / n)
                line += f", PostgreSQL backends {db_ms[-1]:.0f} ms per 1,000"
            print(line, flush=True)
        summary = f"median: server CPU {statistics.median(cpu_ms):.0f} ms per 1,000 resources"
        if db_ms:
            summary += f", PostgreSQL backends {statistics.median(db_ms):.0f} ms per 1,000"
        print(summary + f" ({args.store}, {args.repeat} runs of {args.patients} Bundles)")
        if profiler is not None:
            profiler.dump_stats(str(args.cprofile))
            print(f"cProfile written to {args.cprofile}", file=sys.stderr)
        store.engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
