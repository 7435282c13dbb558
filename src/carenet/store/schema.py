"""The relational schema: resources with every version, and one index table per search type.

Ordinary tables hold only what FHIR has no place for (DESIGN.md principle 1): the resource JSON
lives in ``resources``/``resource_history``; the ``idx_*`` tables are search indexes written in
the same transaction as the resource (principle 2).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

# The current version of every resource (deleted ones keep a row with deleted=true so that a
# read answers 410 Gone and the version counter continues after re-creation).
resources = Table(
    "resources",
    metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    # Milliseconds since the Unix epoch, UTC: portable and exactly comparable on both stores.
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Text, nullable=True),
    PrimaryKeyConstraint("res_type", "res_id", name="pk_resources"),
)
Index("ix_resources_type_updated", resources.c.res_type, resources.c.last_updated)

# Every version ever written (全程留痕): create, update and delete each add one row.
resource_history = Table(
    "resource_history",
    metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),  # POST | PUT | PATCH | DELETE
    Column("content", Text, nullable=True),
    PrimaryKeyConstraint("res_type", "res_id", "version", name="pk_resource_history"),
)
Index("ix_history_updated", resource_history.c.last_updated)
Index("ix_history_type_updated", resource_history.c.res_type, resource_history.c.last_updated)


def _index_table(
    name: str,
    *columns: Column,
    indexes: list[tuple[str, ...]],
    pattern_ops: tuple[str, ...] = (),
    own_rows_extra: tuple[str, ...] = (),
) -> Table:
    table = Table(
        name,
        metadata,
        Column("res_type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        *columns,
    )
    # A resource's own rows of one parameter: the sort key and the per-candidate check of a
    # selective search (without param, SQLite picks the (res_type, param, ...) index instead).
    Index(
        f"ix_{name}_resource",
        table.c.res_type,
        table.c.res_id,
        table.c.param,
        *(table.c[c] for c in own_rows_extra),
    )
    for cols in indexes:
        Index(
            f"ix_{name}_{'_'.join(cols)}",
            table.c.res_type,
            table.c.param,
            *(table.c[c] for c in cols),
            # PostgreSQL can use a btree for LIKE 'x%' only under the C collation or with a
            # pattern operator class; SQLite ignores this.
            postgresql_ops={c: "varchar_pattern_ops" for c in cols if c in pattern_ops},
        )
    return table


# string: value is normalised (case-folded, accents removed) for the default and :contains
# searches; exact keeps the original text for :exact.
idx_string = _index_table(
    "idx_string",
    Column("value", String(512), nullable=False),
    Column("exact", String(512), nullable=False),
    indexes=[("value",)],
    pattern_ops=("value",),  # starts-with is the default string search
)

# token: system and code as given (either may be null); text holds the normalised display/text
# for :text searches.
idx_token = _index_table(
    "idx_token",
    Column("system", String(512), nullable=True),
    Column("code", String(512), nullable=True),
    Column("text", String(512), nullable=True),
    indexes=[("code", "system")],
)

# date: the closed interval [low, high] in ms since the epoch, UTC, that the value covers at
# its precision (a date covers its whole day; a Period its start to end; open ends are the
# extreme values).
idx_date = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    indexes=[("low", "high")],
    # _sort=date reads min(low)/max(high) of each result: SQLite's min() shortcut otherwise
    # walks (res_type, param, low) past every other resource's dates.
    own_rows_extra=("low", "high"),
)

# reference: a local target as (target_type, target_id[, target_version]); anything else
# (absolute URL, canonical) in url.
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("target_version", String(64), nullable=True),
    Column("url", String(1024), nullable=True),
    # (target_id, target_type): `subject=Patient/x` is an equality on all four columns.
    indexes=[("target_id", "target_type"), ("url",)],
)
Index("ix_idx_reference_target", idx_reference.c.target_type, idx_reference.c.target_id)

idx_number = _index_table(
    "idx_number",
    Column("value", Numeric(36, 12), nullable=False),
    indexes=[("value",)],
)

idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Numeric(36, 12), nullable=False),
    Column("system", String(512), nullable=True),
    Column("code", String(128), nullable=True),
    Column("unit", String(128), nullable=True),
    indexes=[("value",)],
)

idx_uri = _index_table(
    "idx_uri",
    Column("value", String(1024), nullable=False),
    indexes=[("value",)],
    pattern_ops=("value",),  # :below is a starts-with
)

INDEX_TABLES: dict[str, Table] = {
    "string": idx_string,
    "token": idx_token,
    "date": idx_date,
    "reference": idx_reference,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}

# Result sets of paged searches, so that following next/previous links gives a stable view
# while data changes underneath.
search_snapshots = Table(
    "search_snapshots",
    metadata,
    Column("snapshot_id", String(64), nullable=False),
    Column("position", Integer, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("created", BigInteger, nullable=False),
    PrimaryKeyConstraint("snapshot_id", "position", name="pk_search_snapshots"),
)
Index("ix_search_snapshots_created", search_snapshots.c.created)

search_snapshot_meta = Table(
    "search_snapshot_meta",
    metadata,
    Column("snapshot_id", String(64), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("query", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),
)
