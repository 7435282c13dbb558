"""Running a FHIR search: one SQL query from ``search_compiler``, then paging, snapshots,
``_include``/``_revinclude`` and the result.

Paged result sets are frozen in ``search_snapshots`` so that following next/previous links is
stable while data changes. The caller's ``visible`` condition (access control) is applied to
matches, snapshot pages and includes here, and to chains and ``_has`` by the compiler.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from sqlalchemy import ColumnElement, Connection, and_, delete, false, func, insert, select

from carenet.fhir.outcomes import Issue, bad_request, gone
from carenet.fhir.searchparams import RESULT_PARAMS, get_param, params_for, resource_types
from carenet.store.protection import SEALED_PREFIX, ResourceProtection
from carenet.store.schema import INDEX_TABLES, resources, search_snapshot_meta, search_snapshots
from carenet.store.search_compiler import compile_search
from carenet.store.search_conditions import SearchContext, Visible
from carenet.store.search_values import check_text, int_param

SNAPSHOT_TTL_MS = 3_600_000
SNAPSHOT_MAX = 10_000
INCLUDE_DEPTH = 3


@dataclass
class SearchResult:
    matches: list[dict[str, Any]]
    includes: list[dict[str, Any]]
    total: int | None
    links: dict[str, str]
    issues: list[Issue] = field(default_factory=list)


def _query_string(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe=':._-')}={quote(v, safe=':/|,$._-~')}" for k, v in params)


def _resource(ctx: SearchContext, content: str | bytes) -> dict[str, Any]:
    """A stored content as the client wrote it (sensitive values opened)."""
    if ctx.protection is None:
        result: dict[str, Any] = orjson.loads(content)
        return result
    return ctx.protection.reveal(content)


def _page_link(prefix: str, snapshot: str, offset: int, count: int) -> str:
    return f"{prefix}?_getpages={snapshot}&_getpagesoffset={offset}&_count={count}"


def _load(
    conn: Connection, ctx: SearchContext, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The current content of ``keys`` that exist, are not deleted and the caller may see."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t, ids in by_type.items():
        seen = ctx.visible_cond(t, resources.c.res_type, resources.c.res_id)
        for k in range(0, len(ids), 500):
            q = select(resources.c.res_type, resources.c.res_id, resources.c.content).where(
                resources.c.res_type == t,
                resources.c.res_id.in_(ids[k : k + 500]),
                resources.c.deleted == false(),
            )
            rows = conn.execute(q if seen is None else q.where(seen))
            for rt, rid, content in rows:
                if content:
                    out[(rt, rid)] = _resource(ctx, content)
    return out


@dataclass
class _IncludeSpec:
    source: str | None  # None: every type (`*`)
    param: str | None  # None: every reference parameter
    target: str | None
    iterate: bool
    reverse: bool


def _parse_includes(ctx: SearchContext, params: list[tuple[str, str]]) -> list[_IncludeSpec]:
    specs = []
    for name, value in params:
        base, _, mod = name.partition(":")
        if base not in ("_include", "_revinclude"):
            continue
        if mod not in ("", "iterate", "recurse"):
            ctx.unknown(name, f"Unknown modifier {mod!r} on {base}")
            continue
        reverse = base == "_revinclude"
        iterate = mod in ("iterate", "recurse")
        if value == "*":
            specs.append(_IncludeSpec(None, None, None, iterate, reverse))
            continue
        parts = value.split(":")
        if len(parts) not in (2, 3) or parts[0] not in resource_types():
            raise bad_request(f"Invalid {base} value {value!r} (Type:parameter[:TargetType])", name)
        target = parts[2] if len(parts) == 3 else None
        if target is not None and target not in resource_types():
            raise bad_request(f"Invalid target type {target!r} in {base}", name)
        if parts[1] == "*":
            specs.append(_IncludeSpec(parts[0], None, target, iterate, reverse))
            continue
        p = get_param(parts[0], parts[1])
        if p is None or p.type != "reference":
            ctx.unknown(name, f"{parts[0]} has no reference parameter {parts[1]!r}")
            continue
        specs.append(_IncludeSpec(parts[0], parts[1], target, iterate, reverse))
    return specs


def _include_round(
    conn: Connection, specs: list[_IncludeSpec], current: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    ref = INDEX_TABLES["reference"]
    found: list[tuple[str, str]] = []
    by_type: dict[str, list[str]] = {}
    for res in current:
        by_type.setdefault(res["resourceType"], []).append(res["id"])
    for spec in specs:
        if not spec.reverse:
            for src, ids in by_type.items():
                if spec.source is not None and src != spec.source:
                    continue
                q = select(ref.c.target_type, ref.c.target_id).where(
                    ref.c.res_type == src,
                    ref.c.res_id.in_(ids),
                    ref.c.target_id.is_not(None),
                )
                if spec.param is not None:
                    q = q.where(ref.c.param == spec.param)
                else:
                    q = q.where(
                        ref.c.param.in_(
                            [p.code for p in params_for(src).values() if p.type == "reference"]
                        )
                    )
                if spec.target is not None:
                    q = q.where(ref.c.target_type == spec.target)
                found.extend(
                    (tt, tid)
                    for tt, tid in conn.execute(q.order_by(ref.c.target_type, ref.c.target_id))
                )
        else:
            for tgt, ids in by_type.items():
                if spec.target is not None and tgt != spec.target:
                    continue
                q = select(ref.c.res_type, ref.c.res_id).where(
                    ref.c.target_type == tgt, ref.c.target_id.in_(ids)
                )
                if spec.source is not None:
                    q = q.where(ref.c.res_type == spec.source)
                if spec.param is not None:
                    q = q.where(ref.c.param == spec.param)
                found.extend(
                    (rt, rid) for rt, rid in conn.execute(q.order_by(ref.c.res_type, ref.c.res_id))
                )
    return found


def _includes(
    conn: Connection, ctx: SearchContext, specs: list[_IncludeSpec], matches: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if not specs or not matches:
        return []
    seen = {(m["resourceType"], m["id"]) for m in matches}
    out: list[dict[str, Any]] = []
    current = matches
    active = specs
    for _round in range(1 + INCLUDE_DEPTH):
        keys = []
        for k in _include_round(conn, active, current):
            if k not in seen:
                seen.add(k)
                keys.append(k)
        # Hidden resources are neither included nor followed by :iterate.
        loaded = _load(conn, ctx, keys)
        current = [loaded[k] for k in keys if k in loaded]
        out.extend(current)
        active = [s for s in specs if s.iterate]
        if not current or not active:
            break
    return out


def search(
    conn: Connection,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    strict: bool = False,
    tz: str = "Asia/Shanghai",
    default_count: int = 20,
    max_count: int = 1000,
    now_ms: int | None = None,
    visible: Visible | None = None,
    protection: ResourceProtection | None = None,
) -> SearchResult:
    """Run a FHIR search of ``res_type`` (None: all types) with decoded (name, value) pairs.

    ``visible`` (access control) restricts the matches and total, snapshot pages, included
    resources, chain targets and ``_has`` sources to what the caller may see; None: everything.
    ``protection`` opens sealed resident IDs and phone numbers in what is returned, matches them
    by blind index, and seals the query a paging snapshot keeps.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    ctx = SearchContext(
        strict=strict,
        tz=tz,
        now_ms=now,
        sqlite=conn.dialect.name == "sqlite",
        visible=visible,
        protection=protection,
    )
    for name, value in params:
        check_text(name, name)
        check_text(value, name)
    if res_type is not None and res_type not in resource_types():
        raise bad_request(f"Unknown resource type {res_type!r}", res_type)
    prefix = res_type or ""

    control = {
        name: value
        for name, value in params
        if name in RESULT_PARAMS or name.split(":")[0] in RESULT_PARAMS
    }
    count = default_count
    if "_count" in control:
        count = min(int_param("_count", control["_count"]), max_count)
    total_mode = control.get("_total", "accurate")
    if total_mode not in ("none", "estimate", "accurate"):
        raise bad_request(f"Invalid _total {total_mode!r} (none, estimate or accurate)", "_total")
    if control.get("_summary") == "count":
        count = 0
        total_mode = "accurate"
    if "_getpages" in control:
        return _from_snapshot(conn, ctx, prefix, control, count)

    compiled = compile_search(ctx, res_type, params)
    where, order = compiled.where, compiled.order
    includes = _parse_includes(ctx, params)

    self_params = [(n, v) for n, v in params if n not in ("_getpages", "_getpagesoffset")]
    links = {"self": f"{prefix}?{_query_string(self_params)}"}
    if count == 0:
        total = None if total_mode == "none" else _count(conn, where)
        return SearchResult([], [], total, links, ctx.issues)

    rows = conn.execute(
        select(resources.c.res_type, resources.c.res_id, resources.c.content)
        .where(*where)
        .order_by(*order)
        .limit(count + 1)
    ).all()
    if len(rows) <= count:
        matches = [_resource(ctx, r.content) for r in rows if r.content]
        total = None if total_mode == "none" else len(matches)
        return SearchResult(
            matches, _includes(conn, ctx, includes, matches), total, links, ctx.issues
        )

    # More than one page: freeze the ordered id list so that later pages do not shift.
    keys = [
        (r.res_type, r.res_id)
        for r in conn.execute(
            select(resources.c.res_type, resources.c.res_id)
            .where(*where)
            .order_by(*order)
            .limit(SNAPSHOT_MAX)
        )
    ]
    total_all = len(keys) if len(keys) < SNAPSHOT_MAX else _count(conn, where)
    snapshot = str(uuid.uuid4())
    conn.execute(delete(search_snapshots).where(search_snapshots.c.created < now - SNAPSHOT_TTL_MS))
    conn.execute(
        delete(search_snapshot_meta).where(search_snapshot_meta.c.created < now - SNAPSHOT_TTL_MS)
    )
    conn.execute(
        insert(search_snapshot_meta),
        [
            {
                "snapshot_id": snapshot,
                "res_type": res_type or "",
                "query": _seal_query(ctx, self_params),
                "total": total_all,
                "created": now,
            }
        ],
    )
    conn.execute(
        insert(search_snapshots),
        [
            {"snapshot_id": snapshot, "position": i, "res_type": t, "res_id": rid, "created": now}
            for i, (t, rid) in enumerate(keys)
        ],
    )
    matches = [_resource(ctx, r.content) for r in rows[:count] if r.content]
    links.update(_paging_links(prefix, snapshot, 0, count, len(keys)))
    total = None if total_mode == "none" else total_all
    return SearchResult(matches, _includes(conn, ctx, includes, matches), total, links, ctx.issues)


def _seal_query(ctx: SearchContext, params: list[tuple[str, str]]) -> str:
    """The query a snapshot keeps (to recount it and to apply its _include): it may name a
    resident ID or a phone number, so it is sealed like them."""
    text = orjson.dumps(params).decode()
    return text if ctx.protection is None else ctx.protection.seal_text(text)


def _open_query(ctx: SearchContext, stored: str) -> str | None:
    if ctx.protection is None:
        return None if stored.startswith(SEALED_PREFIX) else stored
    return ctx.protection.open_text(stored)


def _count(conn: Connection, where: list[ColumnElement[bool]]) -> int:
    return int(conn.execute(select(func.count()).select_from(resources).where(*where)).scalar_one())


def _paging_links(prefix: str, snapshot: str, offset: int, count: int, size: int) -> dict[str, str]:
    links = {"first": _page_link(prefix, snapshot, 0, count)}
    if offset > 0:
        links["previous"] = _page_link(prefix, snapshot, max(0, offset - count), count)
    if offset + count < size:
        links["next"] = _page_link(prefix, snapshot, offset + count, count)
    links["last"] = _page_link(prefix, snapshot, max(0, (size - 1) // count * count), count)
    return links


def _from_snapshot(
    conn: Connection, ctx: SearchContext, prefix: str, control: dict[str, str], count: int
) -> SearchResult:
    snapshot = control["_getpages"]
    offset = int_param("_getpagesoffset", control.get("_getpagesoffset", "0"))
    if count == 0:
        count = 1
    meta = conn.execute(
        select(search_snapshot_meta).where(search_snapshot_meta.c.snapshot_id == snapshot[:64])
    ).first()
    query = _open_query(ctx, meta.query) if meta is not None else None
    if meta is None or query is None or meta.created < ctx.now_ms - SNAPSHOT_TTL_MS:
        raise gone("The search result set has expired; run the search again")
    stored: list[tuple[str, str]] = [(n, v) for n, v in orjson.loads(query)]
    size = int(
        conn.execute(
            select(func.count())
            .select_from(search_snapshots)
            .where(search_snapshots.c.snapshot_id == meta.snapshot_id)
        ).scalar_one()
    )
    s = search_snapshots
    joined = s.join(
        resources,
        and_(resources.c.res_type == s.c.res_type, resources.c.res_id == s.c.res_id),
    )
    # The snapshot holds no caller: whoever reads a page sees only what they may see now. The
    # snapshot's own type, not the one in the request, says which type the rows are.
    snap_type = meta.res_type or None
    seen = ctx.visible_cond(snap_type, resources.c.res_type, resources.c.res_id)
    in_window = [
        s.c.snapshot_id == meta.snapshot_id,
        s.c.position >= offset,
        s.c.position < offset + count,
        resources.c.deleted == false(),
    ]
    rows = conn.execute(
        select(resources.c.content)
        .select_from(joined)
        .where(*in_window, *([seen] if seen is not None else []))
        .order_by(s.c.position)
    ).all()
    matches = [_resource(ctx, r.content) for r in rows if r.content]
    links = {"self": _page_link(prefix, meta.snapshot_id, offset, count)}
    links.update(_paging_links(prefix, meta.snapshot_id, offset, count, size))
    includes = _includes(conn, ctx, _parse_includes(ctx, stored), matches)
    total_mode = dict(stored).get("_total", "accurate")
    total: int | None = None if total_mode == "none" else int(meta.total)
    if total is not None and seen is not None:
        if total <= size:
            # The frozen total counts later-deleted entries too; only hidden ones drop out.
            total = int(
                conn.execute(
                    select(func.count())
                    .select_from(joined)
                    .where(s.c.snapshot_id == meta.snapshot_id, seen)
                ).scalar_one()
            )
        else:
            # The snapshot was cut at SNAPSHOT_MAX: count the stored query again for this caller.
            known = len(ctx.issues)
            total = _count(conn, compile_search(ctx, snap_type, stored).where)
            del ctx.issues[known:]  # already reported with the first page
    return SearchResult(matches, includes, total, links, ctx.issues)


__all__ = ["SearchResult", "Visible", "search"]
