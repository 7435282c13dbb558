"""`carenet audit verify` on a terminal: a progress bar while the chains are walked, then a
table naming the first problem of each broken chain. cli.py owns the command itself."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, create_engine

from carenet.audit.verification import VerifyReport, verify


def run_verify(engine: Engine, console: Console) -> VerifyReport:
    """Verify every chain of the database behind ``engine``, showing progress on ``console``."""
    reader = _reader(engine)
    with (
        Progress(
            TextColumn("verifying audit chains"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar,
        reader.connect() as conn,
    ):
        task = bar.add_task("verify", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = verify(conn, progress=progress)
        conn.rollback()  # read only
    if reader is not engine:
        reader.dispose()
    show_report(report, console)
    return report


def _reader(engine: Engine) -> Engine:
    """An engine whose reads do not block writers. The application's SQLite engine begins
    every transaction IMMEDIATE (a write lock, held for the whole walk); a plain pysqlite
    engine reads from a WAL snapshot instead. verify() copes with appends during the walk."""
    if engine.dialect.name == "sqlite":
        return create_engine(engine.url, connect_args={"timeout": 30})
    return engine


def show_report(report: VerifyReport, console: Console) -> None:
    if report.ok:
        console.print(
            f"[green]audit chains intact[/green]: {report.events} events in {report.chains} chains"
        )
        return
    table = Table(title="audit chain problems (the first of each chain)")
    table.add_column("chain", justify="right")
    table.add_column("seq", justify="right")
    table.add_column("tampering")
    table.add_column("why")
    for p in report.problems:
        table.add_row(str(p.chain_id), str(p.seq), p.kind.value, p.message)
    console.print(table)
    console.print(
        f"[red]{len(report.problems)} of {report.chains} chains broken[/red] "
        f"({report.events} events checked)"
    )
