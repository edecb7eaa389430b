"""Writes never roll the online store back: for each entity the newest event time wins.

Feast's SQLite online store upserts unconditionally, so pushing (or materializing) an older event
after a newer one replaced the newer value with the older one. Feast 0.67's Redis store already
skips a row whose event time is not newer than the stored one; the guard below gives every other
store the same rule, for pushes and materializations alike (both end in `online_write_batch`).
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Feast is imported by whoever opens a store (it costs 6-9 s)
    from feast import FeatureStore


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def newest_rows(store_impl, config, table, data: list) -> list:
    """The rows of a write batch that are newer than both the stored value of their entity and
    any other row of the batch for it (Redis's rule: an equal event time is not newer)."""
    newest: dict[bytes, tuple] = {}
    for row in data:
        key = row[0].SerializeToString()
        if key not in newest or _aware(row[2]) > _aware(newest[key][2]):
            newest[key] = row
    rows = list(newest.values())
    if not rows:
        return []
    # Only the event time matters; one feature keeps the read small.
    stored = store_impl.online_read(config, table, [r[0] for r in rows], [table.features[0].name])
    return [
        row
        for row, (stored_at, _) in zip(rows, stored, strict=True)
        if stored_at is None or _aware(row[2]) > _aware(stored_at)
    ]


def guard_online_writes(store: "FeatureStore") -> "FeatureStore":
    """Make the store's online writes keep the newest event time per entity (idempotent).

    The read-then-write is not atomic: two writers racing on one entity can still interleave
    (the platform has one writer per view: materialization runs and the push command).
    """
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    from pipelines.platform.compat import online_store_impl

    impl = online_store_impl(store)  # the store behind push and materialize
    if isinstance(impl, RedisOnlineStore) or getattr(impl, "_flightline_guarded", False):
        return store
    if not isinstance(impl, SqliteOnlineStore):
        raise TypeError(f"no newest-wins guard for online store {type(impl).__name__}")
    write = impl.online_write_batch

    def online_write_batch(config, table, data, progress):
        rows = newest_rows(impl, config, table, data)
        if progress and len(rows) < len(data):
            progress(len(data) - len(rows))  # skipped rows still count as handled
        write(config, table, rows, progress)

    impl.online_write_batch = online_write_batch
    impl._flightline_guarded = True
    return store
