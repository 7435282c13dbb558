"""The resource repository: create, read, vread, update, patch, delete and history of FHIR
resources, keeping every version, with search indexes written in the same transaction.

A Repository is bound to one open connection (one transaction, owned by the caller's unit of
work); it never commits. Access control and audit (issue 3) wrap this class, so every path —
REST, Bundle entries, operations — goes through the same methods. With a ``ResourceProtection``
it stores resident IDs and phone numbers sealed and indexes them blind (PRIV-1); every method
still takes and returns plaintext resources.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonpatch
import orjson
from psycopg.types.json import Json
from sqlalchemy import (
    Connection,
    bindparam,
    false,
    func,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError

from carenet.fhir import outcomes
from carenet.fhir.outcomes import OperationOutcomeError
from carenet.fhir.validation import assert_valid
from carenet.store import indexer
from carenet.store import search as search_mod
from carenet.store.direct import Prebuilt, run_sql
from carenet.store.engine import value_plans
from carenet.store.protection import ResourceProtection
from carenet.store.schema import idx_date, idx_reference, metadata, resource_history, resources


def now_ms() -> int:
    return int(time.time() * 1000)


def format_instant(ms: int) -> str:
    """FHIR instant in UTC with millisecond precision."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def dumps(resource: dict[str, Any]) -> str:
    return orjson.dumps(resource).decode()


def loads(content: str | bytes) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(content)
    return result


@dataclass(frozen=True)
class HistoryEntry:
    res_type: str
    res_id: str
    version: int
    last_updated: int
    method: str
    resource: dict[str, Any] | None  # None for a delete


@dataclass
class HistoryPage:
    entries: list[HistoryEntry]
    total: int


_RESOURCE_TABLES = ("resources", "resource_history")  # flushed first, in this order

# The statement of every read by id, built once (building it was a tenth of a read's CPU).
_CURRENT = select(resources.c.version, resources.c.deleted, resources.c.content).where(
    resources.c.res_type == bindparam("t"), resources.c.res_id == bindparam("i")
)
_CURRENT_ROW = Prebuilt(_CURRENT)
_CURRENT_ROW_FOR_UPDATE = Prebuilt(_CURRENT.with_for_update())
_WRITE_VERSION = Prebuilt(
    update(resources)
    .where(
        resources.c.res_type == bindparam("t"),
        resources.c.res_id == bindparam("i"),
        resources.c.version == bindparam("prev"),
    )
    .values(
        version=bindparam("version"),
        last_updated=bindparam("last_updated"),
        deleted=bindparam("deleted"),
        content=bindparam("content"),
    )
)


# Resources of one type whose reference parameter points at one target, and whose date
# parameter reaches ``since`` or later (Repository.referencing): built once, like the reads.
_REFERENCING = Prebuilt(
    select(resources.c.content)
    .where(
        resources.c.res_type == bindparam("t"),
        resources.c.deleted == false(),
        resources.c.res_id.in_(
            select(idx_reference.c.res_id).where(
                idx_reference.c.res_type == bindparam("t"),
                idx_reference.c.param == bindparam("p"),
                idx_reference.c.target_type == bindparam("tt"),
                idx_reference.c.target_id == bindparam("ti"),
            )
        ),
        # Checked per candidate on the resource's own date rows, never driven by the date: a
        # scalar subquery, which PostgreSQL cannot turn into a join. As EXISTS, a generic plan
        # (psycopg prepares a statement on its 5th run) became a merge semi-join over every
        # Appointment's date row since the bound: 50 ms instead of 0.2 at 60,000 appointments.
        select(func.max(idx_date.c.high))
        .where(
            idx_date.c.res_type == resources.c.res_type,
            idx_date.c.res_id == resources.c.res_id,
            idx_date.c.param == bindparam("dp"),
        )
        .scalar_subquery()
        >= bindparam("since"),
    )
    .order_by(resources.c.res_id)
)

# A resource and the current resources one of its reference parameters points at
# (Repository.read_with_targets): the read by id and an _include in one round trip.
_target = resources.alias("target")
_WITH_TARGETS = Prebuilt(
    union_all(
        select(
            resources.c.res_type, resources.c.res_id, resources.c.deleted, resources.c.content
        ).where(resources.c.res_type == bindparam("t"), resources.c.res_id == bindparam("i")),
        select(_target.c.res_type, _target.c.res_id, _target.c.deleted, _target.c.content)
        .select_from(
            idx_reference.join(
                _target,
                (_target.c.res_type == idx_reference.c.target_type)
                & (_target.c.res_id == idx_reference.c.target_id),
            )
        )
        .where(
            idx_reference.c.res_type == bindparam("t"),
            idx_reference.c.res_id == bindparam("i"),
            idx_reference.c.param == bindparam("p"),
            _target.c.deleted == false(),
        ),
    )
)


class Repository:
    """CRUD, versions and history of FHIR resources on one connection/transaction."""

    def __init__(
        self,
        conn: Connection,
        *,
        source: str,
        tz: str = "Asia/Shanghai",
        clock: Callable[[], int] = now_ms,
        default_count: int = 20,
        max_count: int = 1000,
        validate: bool = True,
        protection: ResourceProtection | None = None,
    ) -> None:
        self.conn = conn
        self.source = source
        self.tz = tz
        self.clock = clock
        self.default_count = default_count
        self.max_count = max_count
        self.validate = validate
        self.protection = protection
        self._blind = protection.index_code if protection is not None else None
        self.is_postgres = conn.dialect.name == "postgresql"
        # Inserts are buffered and written with one executemany per table, which is what makes
        # transaction Bundles fast; anything that reads flushes first.
        self._buffer: dict[str, list[dict[str, Any]]] = {}
        self._buffered_keys: set[tuple[str, str]] = set()
        # Resources written over (updated, deleted) whose stored index rows the next flush
        # removes before it inserts the buffered ones: on PostgreSQL in the same statement,
        # one round trip fewer per update.
        self._stale: dict[tuple[str, str], None] = {}
        # (version, deleted) of the rows this transaction has locked (read for update or
        # written), so that a read-for-update followed by an update reads the row once. Every
        # version write still checks the previous version (_WRITE_VERSION), so a stale entry
        # could only end in a 409 or 412, never in a lost update; a deleted row is read again.
        self._locked: dict[tuple[str, str], tuple[int, bool]] = {}

    # ---------------------------------------------------------------- buffering

    def flush(self) -> None:
        if not self._buffer and not self._stale:
            return
        stale = list(self._stale)
        order = [*_RESOURCE_TABLES, *sorted(k for k in self._buffer if k not in _RESOURCE_TABLES)]
        if self.is_postgres:
            self._write_all_pg(stale, [(name, self._buffer.get(name)) for name in order])
        else:
            if stale:
                indexer.delete_rows(self.conn, stale)
            for name in order:
                rows = self._buffer.get(name)
                if rows:
                    self.conn.execute(insert(metadata.tables[name]), rows)
        self._buffer.clear()
        self._buffered_keys.clear()
        self._stale.clear()

    def _write_all_pg(
        self,
        stale: list[tuple[str, str]],
        batches: list[tuple[str, list[dict[str, Any]] | None]],
    ) -> None:
        """Every buffered row in one statement and one round trip: each table's rows go as one
        JSON array parameter (serialised by orjson, in C) into an INSERT in a WITH clause.
        A COPY per table took two round trips each, and the per-statement overhead on both
        sides was most of the cost of writing a transaction Bundle.

        The index rows of the resources written over go in the same statement: every part of
        it sees the rows as they were when it began, so its DELETEs remove the old index rows
        and never the ones its INSERTs add."""
        parts, params = indexer.delete_parts_pg(stale) if stale else ([], [])
        for name, rows in batches:
            if not rows:
                continue
            cols = _column_list(name)
            parts.append(
                f"w{len(parts)} AS (INSERT INTO {name} ({cols}) SELECT {cols} "
                f"FROM json_populate_recordset(NULL::{name}, %s::json))"
            )
            params.append(Json(rows, dumps=_rows_json))
        if parts:
            run_sql(self.conn, "WITH " + ", ".join(parts) + " SELECT 1", params)

    def has_buffered(self) -> bool:
        return bool(self._buffer or self._stale)

    def discard_buffer(self) -> None:
        """Forget what was not written yet (a savepoint rolled back: a batch entry failed);
        the locks known from inside it are forgotten too."""
        self._buffer.clear()
        self._buffered_keys.clear()
        self._stale.clear()
        self._locked.clear()

    def add_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Rows of one of our own tables (not a resource's: the notification outbox) to write
        with the next flush, in this transaction: on PostgreSQL in the flush's one statement.
        A rolled-back savepoint forgets them with the rest of the buffer."""
        if table in _RESOURCE_TABLES or table.startswith("idx_") or table not in metadata.tables:
            raise ValueError(f"add_rows does not write {table!r}")
        self._add(table, rows)

    def _add(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._buffer.setdefault(table, []).extend(rows)

    # ---------------------------------------------------------------- helpers

    def _check(self, resource: dict[str, Any], res_type: str) -> None:
        if self.validate:
            assert_valid(resource, expected_type=res_type)

    def _stamp(
        self, resource: dict[str, Any], res_id: str, version: int, ms: int
    ) -> dict[str, Any]:
        out = dict(resource)
        out["id"] = res_id
        meta = dict(out.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(ms)
        meta["source"] = self.source
        out["meta"] = meta
        # resourceType first, then id and meta, then the rest: a tidy, stable order.
        ordered = {
            "resourceType": out.pop("resourceType"),
            "id": out.pop("id"),
            "meta": out.pop("meta"),
        }
        ordered.update(out)
        return ordered

    def _content(self, stored: dict[str, Any]) -> str:
        """The text stored in ``resources``/``resource_history``: sensitive values sealed."""
        text = dumps(stored)
        return text if self.protection is None else self.protection.seal(text)

    def _resource(self, content: str | bytes) -> dict[str, Any]:
        """A stored content as the client wrote it."""
        return loads(content) if self.protection is None else self.protection.reveal(content)

    def _current_row(self, res_type: str, res_id: str, *, lock: bool = False) -> Any:
        if (res_type, res_id) in self._buffered_keys:
            self.flush()
        q = _CURRENT_ROW_FOR_UPDATE if lock and self.is_postgres else _CURRENT_ROW
        row = q.run(self.conn, {"t": res_type, "i": res_id}).first()
        if lock and row is not None:
            self._locked[(res_type, res_id)] = (row.version, row.deleted)
        return row

    def _locked_version(self, res_type: str, res_id: str) -> tuple[int, bool] | None:
        """(version, deleted) of the current row, locked until the transaction ends; None if
        there is none. Not read again if this transaction already holds it."""
        known = self._locked.get((res_type, res_id))
        if known is not None and not known[1]:
            return known
        row = self._current_row(res_type, res_id, lock=True)
        return None if row is None else (row.version, row.deleted)

    def _write_new(
        self, res_type: str, res_id: str, resource: dict[str, Any], method: str
    ) -> dict[str, Any]:
        ms = self.clock()
        stored = self._stamp(resource, res_id, 1, ms)
        content = self._content(stored)
        self._add(
            "resources",
            [
                {
                    "res_type": res_type,
                    "res_id": res_id,
                    "version": 1,
                    "last_updated": ms,
                    "deleted": False,
                    "content": content,
                }
            ],
        )
        self._add(
            "resource_history",
            [
                {
                    "res_type": res_type,
                    "res_id": res_id,
                    "version": 1,
                    "last_updated": ms,
                    "deleted": False,
                    "method": method,
                    "content": content,
                }
            ],
        )
        for table, rows in indexer.rows_for(stored, tz=self.tz, blind=self._blind).items():
            self._add(table, rows)
        self._buffered_keys.add((res_type, res_id))
        return stored

    def _write_version(
        self, res_type: str, res_id: str, resource: dict[str, Any] | None, version: int, method: str
    ) -> dict[str, Any] | None:
        """Write version ``version`` (> 1) over an existing row; resource None deletes."""
        key = (res_type, res_id)
        if key in self._buffered_keys:
            # Its row or its previous version's index rows are still in the buffer: write
            # them first (the UPDATE below needs the row; the flush after it removes every
            # index row stored by then, else these would outlive their version).
            self.flush()
        ms = self.clock()
        stored = self._stamp(resource, res_id, version, ms) if resource is not None else None
        content = self._content(stored) if stored is not None else None
        result = _WRITE_VERSION.run(
            self.conn,
            {
                "t": res_type,
                "i": res_id,
                "prev": version - 1,
                "version": version,
                "last_updated": ms,
                "deleted": stored is None,
                "content": content,
            },
        )
        if result.rowcount != 1:
            # Someone else wrote a version between our read and our write (SQLite cannot lock
            # the row up front; PostgreSQL holds FOR UPDATE and never gets here).
            raise outcomes.conflict(f"{res_type}/{res_id} was changed concurrently; retry")
        self._locked[key] = (version, stored is None)
        self._add(
            "resource_history",
            [
                {
                    "res_type": res_type,
                    "res_id": res_id,
                    "version": version,
                    "last_updated": ms,
                    "deleted": stored is None,
                    "method": method,
                    "content": content,
                }
            ],
        )
        self._stale[key] = None  # its stored index rows go at the next flush
        if stored is not None:
            for table, rows in indexer.rows_for(stored, tz=self.tz, blind=self._blind).items():
                self._add(table, rows)
            self._buffered_keys.add(key)
        return stored

    # ---------------------------------------------------------------- interactions

    def create(
        self,
        res_type: str,
        resource: dict[str, Any],
        *,
        method: str = "POST",
        res_id: str | None = None,
        validated: bool = False,
    ) -> dict[str, Any]:
        """Create with a server-assigned UUID (or the given id, used by transaction Bundles).
        ``validated``: the caller (the access guard) has just validated this very resource."""
        if not validated:
            self._check(resource, res_type)
        new_id = res_id or str(uuid.uuid4())
        return self._write_new(res_type, new_id, resource, method)

    def conditional_create(
        self, res_type: str, resource: dict[str, Any], criteria: str, *, res_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """If-None-Exist: create unless exactly one match; 412 when several match."""
        self._check(resource, res_type)
        match = self.conditional_match(res_type, criteria)
        if match is not None:
            return match, False
        return self.create(res_type, resource, res_id=res_id), True

    def conditional_match(self, res_type: str, criteria: str) -> dict[str, Any] | None:
        """The one resource matching If-None-Exist criteria, None if none; 412 if several.

        Holds a lock on the criteria until the transaction ends, so that a concurrent
        conditional create with the same criteria waits and then sees what this one wrote.
        """
        self._lock_criteria(res_type, criteria)
        matches = self.find(res_type, criteria, limit=2)
        if len(matches) > 1:
            raise outcomes.precondition_failed(
                f"If-None-Exist criteria {criteria!r} match more than one {res_type}"
            )
        return matches[0] if matches else None

    def read(self, res_type: str, res_id: str) -> dict[str, Any]:
        row = self._current_row(res_type, res_id)
        if row is None:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        if row.deleted:
            err = outcomes.gone(f"{res_type}/{res_id} has been deleted")
            err.headers["ETag"] = f'W/"{row.version}"'
            raise err
        return self._resource(row.content)

    def read_with_targets(
        self, res_type: str, res_id: str, param: str
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A resource (as ``read``: 404 unknown, 410 deleted) and, by "Type/id", the current
        resources its reference search parameter ``param`` points at (as ``_include``; targets
        that do not exist or are deleted are left out). One statement instead of one read per
        target: for a hot path (a Slot's Schedule and its actors, on every $book)."""
        self.flush()  # the targets may have been written by this transaction too
        found: dict[str, dict[str, Any]] = {}
        own = None
        for row in _WITH_TARGETS.run(self.conn, {"t": res_type, "i": res_id, "p": param}):
            if row.res_type == res_type and row.res_id == res_id and own is None:
                own = row
            elif row.content:
                found.setdefault(f"{row.res_type}/{row.res_id}", self._resource(row.content))
        if own is None or own.deleted or not own.content:
            # read's own 404 or 410; or, if it was written meanwhile (read committed), it
            return self.read(res_type, res_id), found
        return self._resource(own.content), found

    def read_for_update(self, res_type: str, res_id: str) -> dict[str, Any]:
        """Read and lock the current version until the transaction ends, so that read-check-
        write steps (taking a slot's capacity) serialise on the row. PostgreSQL: FOR UPDATE;
        SQLite: the transaction already holds the database's write lock (BEGIN IMMEDIATE)."""
        row = self._current_row(res_type, res_id, lock=True)
        if row is None or row.deleted:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        return self._resource(row.content)

    def current_version(self, res_type: str, res_id: str) -> tuple[int, bool] | None:
        row = self._current_row(res_type, res_id)
        return None if row is None else (row.version, row.deleted)

    def vread(self, res_type: str, res_id: str, version: str) -> dict[str, Any]:
        if not version.isdigit():
            raise outcomes.not_found(f"{res_type}/{res_id} has no version {version!r}")
        self.flush()
        row = self.conn.execute(
            select(resource_history.c.deleted, resource_history.c.content).where(
                resource_history.c.res_type == res_type,
                resource_history.c.res_id == res_id,
                resource_history.c.version == int(version),
            )
        ).first()
        if row is None:
            raise outcomes.not_found(f"{res_type}/{res_id}/_history/{version} is not known")
        if row.deleted:
            raise outcomes.gone(f"{res_type}/{res_id} version {version} is a deletion")
        return self._resource(row.content)

    def update(
        self,
        res_type: str,
        res_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        method: str = "PUT",
        validated: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Update (or create-on-update). Returns (stored, created)."""
        body_id = resource.get("id")
        if body_id is None:
            raise outcomes.bad_request(
                f"The resource in a PUT must carry its id ({res_id})",
                f"{res_type}.id",
                code="required",
            )
        if body_id != res_id:
            raise outcomes.bad_request(
                f"Resource id {body_id!r} does not match the id in the URL {res_id!r}",
                f"{res_type}.id",
            )
        if not validated:
            self._check(resource, res_type)
        current = self._locked_version(res_type, res_id)
        if current is None:
            if if_match is not None:
                raise outcomes.precondition_failed(
                    f"If-Match given but {res_type}/{res_id} does not exist"
                )
            try:
                with self.conn.begin_nested():
                    self.flush()
                    stored = self._write_new(res_type, res_id, resource, method)
                    self.flush()
            except IntegrityError as exc:
                raise outcomes.conflict(
                    f"{res_type}/{res_id} was created concurrently; retry"
                ) from exc
            return stored, True
        version, deleted = current
        if if_match is not None and if_match != version:
            raise outcomes.precondition_failed(
                f"Version mismatch for {res_type}/{res_id}: If-Match {if_match}, current {version}"
            )
        written = self._write_version(res_type, res_id, resource, version + 1, method)
        assert written is not None
        return written, deleted

    def patch(
        self, res_type: str, res_id: str, operations: Any, *, if_match: int | None = None
    ) -> dict[str, Any]:
        """JSON Patch (RFC 6902); the result is validated like any update."""
        patched = apply_json_patch(self.read(res_type, res_id), operations, res_type, res_id)
        stored, _ = self.update(res_type, res_id, patched, if_match=if_match, method="PATCH")
        return stored

    def delete(self, res_type: str, res_id: str) -> bool:
        """Logical delete, keeping every version (ONL-9). False if already deleted."""
        current = self._locked_version(res_type, res_id)
        if current is None:
            raise outcomes.not_found(f"{res_type}/{res_id} is not known")
        version, deleted = current
        if deleted:
            return False
        self._write_version(res_type, res_id, None, version + 1, "DELETE")
        return True

    # ---------------------------------------------------------------- search

    def search(
        self,
        res_type: str | None,
        params: list[tuple[str, str]],
        *,
        strict: bool = False,
        visible: search_mod.Visible | None = None,
    ) -> search_mod.SearchResult:
        """A FHIR search; ``visible`` restricts every part of it to what the caller may see."""
        self.flush()
        with value_plans(self.conn):
            return search_mod.search(
                self.conn,
                res_type,
                params,
                strict=strict,
                tz=self.tz,
                default_count=self.default_count,
                max_count=self.max_count,
                visible=visible,
                protection=self.protection,
            )

    def referencing(
        self, res_type: str, param: str, target: str, *, date_param: str, since_ms: int
    ) -> list[dict[str, Any]]:
        """Current resources of ``res_type`` whose reference search parameter ``param`` points
        at ``target`` ("Type/id") and whose date parameter ``date_param`` covers an instant at
        or after ``since_ms`` (its interval ends then or later), ordered by id.

        The same rows a search ``param=target&date_param=ge...`` starts from, without compiling
        a search: one prebuilt statement, for a hot path that asks it on every request (a
        patient's bookings, on every $book). Callers that need an exact date bound compare
        the resource's own value; no access control (callers use the guarded repository's
        ``inner`` for their own checks), no paging, no limit: keep ``since_ms`` recent."""
        ttype, _, tid = target.partition("/")
        if not ttype or not tid:
            raise ValueError(f"target must be Type/id, got {target!r}")
        self.flush()
        rows = _REFERENCING.run(
            self.conn,
            {
                "t": res_type,
                "p": param,
                "tt": ttype,
                "ti": tid,
                "dp": date_param,
                "since": since_ms,
            },
        )
        return [self._resource(r.content) for r in rows if r.content]

    def find(
        self,
        res_type: str,
        criteria: str,
        *,
        limit: int = 2,
        visible: search_mod.Visible | None = None,
    ) -> list[dict[str, Any]]:
        """The resources matching conditional criteria (a query string), at most ``limit``."""
        from urllib.parse import parse_qsl

        params = [(k, v) for k, v in parse_qsl(criteria.lstrip("?"), keep_blank_values=True)]
        if not params:
            raise outcomes.bad_request(f"Conditional criteria {criteria!r} are empty")
        params = [p for p in params if p[0] != "_count"] + [("_count", str(limit))]
        result = self.search(res_type, params, strict=True, visible=visible)
        return result.matches

    def _lock_criteria(self, res_type: str, criteria: str) -> None:
        # Two concurrent conditional creates with the same criteria must not both create:
        # serialise them on a transaction-scoped advisory lock (SQLite is serialised anyway).
        if self.is_postgres:
            self.conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{res_type}?{criteria}"}
            )

    # ---------------------------------------------------------------- history

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since: int | None = None,
        until: int | None = None,
        count: int | None = None,
        offset: int = 0,
    ) -> HistoryPage:
        """Versions newest first. ``until`` pins the view so that paging is stable."""
        self.flush()
        conds = []
        if res_type is not None:
            conds.append(resource_history.c.res_type == res_type)
        if res_id is not None:
            conds.append(resource_history.c.res_id == res_id)
        if since is not None:
            conds.append(resource_history.c.last_updated >= since)
        if until is not None:
            conds.append(resource_history.c.last_updated <= until)
        limit = min(count if count is not None else self.default_count, self.max_count)
        with value_plans(self.conn):  # _since ranges: the plan depends on the instant
            total = self.conn.execute(
                select(func.count()).select_from(resource_history).where(*conds)
            ).scalar_one()
            rows = self.conn.execute(
                select(resource_history)
                .where(*conds)
                .order_by(
                    resource_history.c.last_updated.desc(),
                    resource_history.c.version.desc(),
                    resource_history.c.res_id,
                )
                .limit(limit)
                .offset(offset)
            ).all()
        entries = [
            HistoryEntry(
                r.res_type,
                r.res_id,
                r.version,
                r.last_updated,
                r.method,
                self._resource(r.content) if r.content else None,
            )
            for r in rows
        ]
        return HistoryPage(entries, total)


@functools.cache
def _column_list(table_name: str) -> str:
    return ", ".join(c.name for c in metadata.tables[table_name].columns)


def _rows_json(rows: Any) -> bytes:
    # bytes straight to the wire: a str would be decoded here and encoded again by psycopg.
    return orjson.dumps(rows, default=_json_default)


def _json_default(value: Any) -> str:
    """Index values orjson does not know: Decimal, as its exact text (a JSON string converts
    to numeric as the literal would)."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def apply_json_patch(
    current: dict[str, Any], operations: Any, res_type: str, res_id: str
) -> dict[str, Any]:
    """The resource after a JSON Patch document, which may not change its type or id."""
    if not isinstance(operations, list):
        raise outcomes.bad_request(
            "A JSON Patch document must be an array of operations", code="structure"
        )
    try:
        patched = jsonpatch.JsonPatch(operations).apply(current)
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
        ValueError,
    ) as exc:
        raise outcomes.unprocessable(
            f"JSON Patch could not be applied: {exc}", code="processing"
        ) from exc
    if not isinstance(patched, dict) or patched.get("resourceType") != res_type:
        raise outcomes.unprocessable(
            "JSON Patch may not change the resourceType", f"{res_type}.resourceType"
        )
    if patched.get("id") != res_id:
        raise outcomes.unprocessable("JSON Patch may not change the id", f"{res_type}.id")
    return patched


def parse_etag(value: str | None) -> int | None:
    """If-Match: W/"3" or "3" -> 3. Anything else is a 400."""
    if value is None or value.strip() == "":
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    if not v.isdigit():
        raise OperationOutcomeError(
            400,
            [
                outcomes.Issue(
                    "error", "invalid", f'Malformed If-Match ETag {value!r}; expected W/"<version>"'
                )
            ],
        )
    return int(v)
