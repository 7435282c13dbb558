"""The ``carenet`` command: serve, migrate, demo, load, seal-existing, scheduling, bench, audit
and client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from carenet.config import Settings, get_settings

app = typer.Typer(
    help="CareNet 互联网+医疗健康 platform", no_args_is_help=True, add_completion=False
)
console = Console(stderr=True)


def _progress() -> Progress:
    """The progress bar of long CLI work: description, bar, done/total, time elapsed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _settings() -> Settings:
    return get_settings()


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (CARENET_DATABASE_URL)."""
    from carenet.store.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    console.print(f"[green]database migrated[/green] ({_safe_url(s.database_url)})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    workers: Annotated[int, typer.Option(help="worker processes (PostgreSQL only)")] = 1,
) -> None:
    """Serve the portals and the FHIR API (http://HOST:PORT/fhir, docs at /docs)."""
    import uvicorn

    s = _settings()
    h = host or s.host
    p = port or s.port
    console.print(
        f"CareNet serving FHIR R4 at [bold]http://{h}:{p}/fhir[/bold] — API docs at http://{h}:{p}/docs"
    )
    if workers > 1:
        from carenet.api.serving import serve_workers

        try:
            status = serve_workers("carenet.bootstrap:build_app", h, p, workers)
        except OSError as exc:
            console.print(f"[red]cannot listen on {h}:{p}[/red]: {exc.strerror or exc}")
            raise typer.Exit(1) from exc
        raise typer.Exit(status)
    from carenet.bootstrap import build_app

    uvicorn.run(build_app(s), host=h, port=p, log_level="info")


@app.command()
def demo(seed: Annotated[int, typer.Option(help="random seed of the demo region")] = 2026) -> None:
    """Load the demo region (institutions, practitioners, patients) and a week of schedules at
    its hospitals of level 2 and above, some slots already booked. Loading twice adds nothing."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from carenet.bootstrap import build_store
    from carenet.demo import schedules
    from carenet.demo.region import demo_bundles, summary
    from carenet.fhir.outcomes import OperationOutcomeError
    from carenet.store.maintenance import analyze

    bundles = demo_bundles(seed=seed)
    counts = summary(bundles)
    _post_bundles(bundles, "demo region")
    console.print(
        "[green]demo region loaded[/green]: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )

    s = _settings()
    store = build_store(s)
    now = datetime.now(ZoneInfo(s.timezone))
    added = {"schedules": 0, "slots": 0, "booked": 0}
    refused = 0
    try:
        roles = schedules.choose_roles(
            schedules.find_doctor_roles(store), schedules.DOCTORS_PER_HOSPITAL
        )
        patients = schedules.find_patients(store)
        with _progress() as bar:
            task = bar.add_task("demo schedules", total=len(roles))
            for index, role in enumerate(roles):
                try:
                    result = schedules.load_schedule(
                        store, s, role, index, patients, seed=seed, now=now
                    )
                except OperationOutcomeError as err:
                    refused += 1
                    console.print(
                        f"[red]schedule of PractitionerRole/{role.role_id} refused "
                        f"({err.status})[/red]: {str(err)[:500]}"
                    )
                else:
                    added["schedules"] += result.created
                    added["slots"] += result.slots
                    added["booked"] += result.booked
                bar.advance(task)
        if added["slots"]:
            analyze(store.engine)
    finally:
        store.engine.dispose()
    console.print(
        "[green]demo schedules added[/green]: "
        + ", ".join(f"{k} {v}" for k, v in added.items())
        + f" ({len(roles)} doctors at hospitals of level 2 and above, {schedules.DAYS} days)"
    )
    if refused:
        raise typer.Exit(1)


@app.command()
def load(
    paths: Annotated[
        list[Path], typer.Argument(help="Bundle .json files, .ndjson files, or folders of them")
    ],
    batch_size: Annotated[int, typer.Option(help="resources per transaction for NDJSON")] = 500,
) -> None:
    """Load FHIR data: transaction/batch Bundles, other Bundles (entries stored), NDJSON."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".json", ".ndjson")))
        elif p.exists():
            files.append(p)
        else:
            console.print(f"[red]no such file or folder: {p}[/red]")
            raise typer.Exit(2)
    bundles: list[dict[str, Any]] = []
    for f in files:
        bundles.extend(_bundles_from_file(f, batch_size))
    ok = _post_bundles(bundles, "loading")
    console.print(f"[green]loaded[/green] {ok} of {len(bundles)} bundles from {len(files)} files")
    if ok != len(bundles):
        raise typer.Exit(1)


def _bundles_from_file(f: Path, batch_size: int) -> list[dict[str, Any]]:
    from carenet.fhir.jsonparse import parse_json

    raw = f.read_bytes()
    if f.suffix == ".ndjson":
        resources = [parse_json(line) for line in raw.splitlines() if line.strip()]
    else:
        doc = parse_json(raw)
        if (
            isinstance(doc, dict)
            and doc.get("resourceType") == "Bundle"
            and doc.get("type") in ("transaction", "batch")
        ):
            return [doc]
        if (
            isinstance(doc, dict)
            and doc.get("resourceType") == "Bundle"
            and doc.get("type") == "collection"
        ):
            resources = [
                e["resource"]
                for e in doc.get("entry", [])
                if isinstance(e, dict) and "resource" in e
            ]
        else:
            resources = [doc]
    out = []
    for i in range(0, len(resources), batch_size):
        entries = []
        for r in resources[i : i + batch_size]:
            if r.get("id"):
                entries.append(
                    {
                        "resource": r,
                        "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                    }
                )
            else:
                entries.append(
                    {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                )
        out.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return out


def _post_bundles(bundles: list[dict[str, Any]], label: str) -> int:
    """Run each Bundle through the same code path as POST /fhir, each in one transaction."""
    from carenet.api.audit_trail import Trail, Who
    from carenet.api.fhir_rest import FhirRequest, execute
    from carenet.audit import append_many
    from carenet.bootstrap import build_store
    from carenet.crypto.masking import mask_text
    from carenet.fhir.outcomes import OperationOutcomeError
    from carenet.store.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    store = build_store(s)
    ok = 0
    total = sum(len(b.get("entry", [])) for b in bundles)
    with _progress() as bar:
        task = bar.add_task(label, total=total)
        for b in bundles:
            try:
                trail = Trail(
                    Who(agent=f"Device/carenet-cli-{label.replace(' ', '-')}", role="operator")
                )
                with store.unit_of_work() as uow:
                    req = FhirRequest(method="POST", path="", body=b, base=s.fhir_base, trail=trail)
                    execute(uow.repo, req)
                    uow.repo.flush()
                    append_many(uow.repo.conn, trail.records, chains=s.audit_chains)
                    uow.commit()
                ok += 1
            except OperationOutcomeError as err:
                # The diagnostics may quote an If-None-Exist criterion with a resident ID.
                reason = mask_text(str(err))[:500]
                console.print(f"[red]bundle refused ({err.status})[/red]: {reason}")
            bar.advance(task, len(b.get("entry", [])))
    from carenet.store.maintenance import analyze

    analyze(store.engine)
    store.engine.dispose()
    return ok


@app.command("seal-existing")
def seal_existing() -> None:
    """Seal resident IDs and phone numbers stored in clear before this version (run once)."""
    from carenet.bootstrap import build_protection
    from carenet.store.engine import build_engine
    from carenet.store.maintenance import seal_plaintext
    from carenet.store.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    engine = build_engine(s.database_url)
    try:
        report = seal_plaintext(engine, build_protection(s), tz=s.timezone)
    finally:
        engine.dispose()
    console.print(
        f"[green]sealed[/green] {report.current} current versions (re-indexed) and "
        f"{report.history} history versions"
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    which: Annotated[str, typer.Argument(help="ingest | latency | booking | profile_ingest")],
) -> None:
    """Run a benchmark from bench/ (results go to bench/RESULTS.md). Extra options pass through."""
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    import importlib

    try:
        module = importlib.import_module(f"bench.{which}")
    except ModuleNotFoundError as exc:
        console.print(f"[red]no benchmark named {which!r}[/red] ({exc})")
        raise typer.Exit(2) from exc
    raise typer.Exit(module.main(list(ctx.args)))


scheduling_app = typer.Typer(
    help="Time-slot appointments (分时段预约): daily jobs", no_args_is_help=True
)
app.add_typer(scheduling_app, name="scheduling")


@scheduling_app.command("roll")
def scheduling_roll() -> None:
    """Generate slots of every active schedule for the booking window from today; run daily."""
    from carenet.bootstrap import build_store
    from carenet.domains.scheduling.jobs import roll_schedules

    s = _settings()
    store = build_store(s)
    try:
        done, created, refused = roll_schedules(store, s)
    finally:
        store.engine.dispose()
    console.print(f"[green]{done} schedule(s) rolled[/green], {created} slot(s) created")
    if refused:
        console.print(f"[red]refused (invalid templates): {', '.join(refused)}[/red]")
        raise typer.Exit(1)


@scheduling_app.command("remind")
def scheduling_remind(
    day: Annotated[
        str | None, typer.Option(help="visit day YYYY-MM-DD (default: tomorrow, local time)")
    ] = None,
) -> None:
    """Queue the day-before reminder SMS (预约提醒) for every appointment on DAY; run it daily.
    Each appointment is reminded once, however often this runs."""
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    from carenet.bootstrap import build_auth_context, build_store
    from carenet.domains.scheduling.jobs import remind_day_before

    s = _settings()
    try:
        when = (
            date.fromisoformat(day)
            if day
            else datetime.now(ZoneInfo(s.timezone)).date() + timedelta(days=1)
        )
    except ValueError as exc:
        console.print(f"[red]--day must be a date YYYY-MM-DD, not {day!r}[/red]")
        raise typer.Exit(2) from exc
    store = build_store(s)
    try:
        sent = remind_day_before(store, s, build_auth_context(s).notifier, when)
    finally:
        store.engine.dispose()
    console.print(f"[green]{sent} reminder(s) queued[/green] for appointments on {when}")


audit_app = typer.Typer(help="The audit chain (全程留痕): verify it", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk every audit hash chain; name the first altered, deleted or inserted event."""
    from carenet.audit.console import run_verify
    from carenet.store.engine import build_engine

    engine = build_engine(_settings().database_url)
    try:
        report = run_verify(engine, console)
    finally:
        engine.dispose()
    raise typer.Exit(0 if report.ok else 1)


@app.command("export-capability")
def export_capability() -> None:
    """Print the CapabilityStatement (for documentation)."""
    from carenet.api.capability import capability_statement

    sys.stdout.write(
        orjson.dumps(
            capability_statement(_settings().fhir_base), option=orjson.OPT_INDENT_2
        ).decode()
        + "\n"
    )


client_app = typer.Typer(help="OAuth2 / SMART clients", no_args_is_help=True)
app.add_typer(client_app, name="client")


@client_app.command("create")
def client_create(
    name: Annotated[str, typer.Option(help="the client's name, shown on the consent page")],
    scope: Annotated[str, typer.Option(help='scopes it may be granted, e.g. "system/*.rs"')],
    kind: Annotated[str, typer.Option(help="confidential | public")] = "confidential",
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="redirect URI (repeatable; apps only)")
    ] = None,
    grant_type: Annotated[
        list[str] | None,
        typer.Option(help="authorization_code | client_credentials | refresh_token (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Register an OAuth2 client and print its client_id and client_secret (shown only once)."""
    from carenet.access.clients import create_client
    from carenet.bootstrap import build_store
    from carenet.fhir.outcomes import OperationOutcomeError
    from carenet.store.migrate import upgrade

    s = _settings()
    upgrade(s.database_url)
    store = build_store(s)
    try:
        with store.unit_of_work() as uow:
            client_id, secret = create_client(
                uow.repo.conn,
                name=name,
                scopes=scope,
                kind=kind,  # type: ignore[arg-type]  # checked by create_client
                redirect_uris=tuple(redirect_uri or ()),
                grant_types=tuple(grant_type) if grant_type else None,
            )
            uow.commit()
    except OperationOutcomeError as err:
        console.print(f"[red]client refused ({err.status})[/red]: {err}")
        raise typer.Exit(2) from err
    finally:
        store.engine.dispose()
    token_endpoint = s.base_url.rstrip("/") + "/auth/token"
    if as_json:
        out = {
            "client_id": client_id,
            "client_secret": secret,
            "scope": " ".join(scope.split()),
            "token_endpoint": token_endpoint,
        }
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return
    console.print(f"[green]client registered[/green]: {name}")
    sys.stdout.write(f"client_id: {client_id}\n")
    if secret is not None:
        sys.stdout.write(f"client_secret: {secret}\n")
        console.print("[yellow]the secret is shown only now; it is stored only as a hash[/yellow]")
    console.print(f"token endpoint: {token_endpoint}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
