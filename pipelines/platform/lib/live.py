"""The live path: the online store fed as facts become known, so that a request at t is served
what the point-in-time join gives for t (issue 24).

Every feature view declares its live path in the task definition (`feature_tables[].live`):
`events` (each row written when it becomes known: a push source or event stream), `published`
(rows published on a cadence, stamped on it), `static` (reference values, TTL 0) or `none` (no
live path: the service reports the view unavailable). The platform computes the rows with the
task's own feature functions (the ones the batch tables are built with) from the facts of the
days around the clock, and writes each row once the clock has reached its stamp, the newest per
entity; the task supplies only its domain functions. On the replayed clock the facts come from
the landed day files; a deployment would compute the same rows from its event streams.

`LiveFeed.advance_to(t)` is the one call: "every event known up to t, written". Feeding event
by event or in one go leaves the same store (the online writes keep the newest event per entity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.platform.lib.lake import PARTITION_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from pipelines.platform.components.definition import Task

EVENT_TIMESTAMP = "event_timestamp"
# A day beyond the clock is computed too: a table can publish ahead (tomorrow's schedule is
# stamped today); only its rows stamped at or before the clock are written.
LOOKAHEAD_PARTITIONS = 1
# A partition's rows can be stamped after it ends (a red-eye lands the next morning).
LOOKBEHIND_PARTITIONS = 1


class LivePathError(ValueError):
    """A view's declared live path cannot serve what the point-in-time join gives."""


@dataclass(frozen=True)
class ViewLivePath:
    view: str  # the Feast feature view
    table: str  # the feature table it reads
    kind: str  # events | published | static | none
    every: str | None
    ttl_seconds: float  # 0: never expires
    note: str = ""


def live_paths(task: Task) -> dict[str, ViewLivePath]:
    """Every feature view of the task with its declared live path (Feast objects from the
    declarations, no store)."""
    import pandas as pd
    from feast import FeatureView

    tables = {t.name: t for t in task.definition.feature_tables if t.feast_source}
    objects = task.domain.feature_definitions(lambda table: f"@{table}")
    out = {}
    for name, obj in objects.items():
        if not isinstance(obj, FeatureView):
            continue
        table = obj.batch_source.path.removeprefix("@")
        if table not in tables:
            raise LivePathError(
                f"task {task.name}: view {name} reads {table!r}, not a Feast feature table"
            )
        live = tables[table].live
        ttl = pd.Timedelta(obj.ttl or 0).total_seconds()
        path = ViewLivePath(name, table, live.kind, live.every, ttl, live.note)
        _check_honest(task.name, path)
        out[name] = path
    return out


def _check_honest(task: str, path: ViewLivePath) -> None:
    """A TTL shorter than the refresh cadence would serve missing between refreshes where the
    join gives a value; a static view must never expire."""
    import pandas as pd

    if path.kind == "published" and path.ttl_seconds:
        every = pd.Timedelta(pd.tseries.frequencies.to_offset(path.every)).total_seconds()
        if every > path.ttl_seconds:
            raise LivePathError(
                f"task {task}: view {path.view} is published every {path.every} but expires "
                f"after {path.ttl_seconds:.0f} s: its TTL is not honest"
            )
    if path.kind == "static" and path.ttl_seconds:
        raise LivePathError(f"task {task}: static view {path.view} must have TTL 0")


def unavailable_views(task: Task) -> tuple[str, ...]:
    """Views without a live path: the service reports them unavailable."""
    return tuple(v for v, p in live_paths(task).items() if p.kind == "none")


RawReader = Callable[[str, str], "pd.DataFrame | None"]  # (landing table, partition) -> rows


def landed_reader(landing_dir) -> RawReader:
    """Raw rows from the task's landed day files (the replayed clock's event source); a day not
    landed yet reads as nothing."""
    from pipelines.platform.lib.landing import LandingError, read_landed_day

    def read(table: str, day: str):
        try:
            landed = read_landed_day(landing_dir, table, day)
        except LandingError as exc:
            if str(exc).startswith(f"no {table} file"):
                return None  # not landed yet
            raise
        return landed.frame.assign(**{PARTITION_COLUMN: day})

    return read


def _needed_partitions(task: Task, days: list[str]) -> dict[str, list[str]]:
    """Per table (raw ones included), the partitions computing `days` of every Feast table reads:
    each input with a trailing window reaches that many partitions further back."""
    need: dict[str, set[str]] = {}
    for table in reversed(task.definition.feature_tables):
        own = need.setdefault(table.name, set()) | (set(days) if table.feast_source else set())
        need[table.name] = own
        for source in table.table_inputs():
            extra = set(own)
            if source.window:
                for key in own:
                    extra.update(task.previous_partitions(key, source.window))
            need.setdefault(source.table, set()).update(extra)
    return {name: sorted(keys) for name, keys in need.items()}


def compute_tables(task: Task, read_raw: RawReader, days: list[str]) -> dict[str, pd.DataFrame]:
    """Every Feast feature table of `days`, computed as the batch assets compute them (one run
    over the partitions), from the raw rows `read_raw` gives."""
    import pandas as pd

    from pipelines.platform.components.definition import accepts

    need = _needed_partitions(task, days)
    frames: dict[str, pd.DataFrame] = {}
    for landing in task.definition.landing_tables:
        raw = f"raw_{landing.name}"
        parts = [f for d in need.get(raw, []) if (f := read_raw(landing.name, d)) is not None]
        if parts:
            frames[raw] = pd.concat(parts, ignore_index=True)
    for name in task.definition.reference_tables:
        if name in need and task.domain.read_reference is not None:
            frames[name] = task.domain.read_reference(name)
    for table in task.definition.feature_tables:
        keys = need.get(table.name, [])
        inputs = table.table_inputs()
        if not keys or any(i.table not in frames for i in inputs):
            continue
        args = []
        for source in inputs:
            frame = frames[source.table]
            if PARTITION_COLUMN in frame.columns and source.table in need:
                window = set(keys)
                for key in keys if source.window else []:
                    window.update(task.previous_partitions(key, source.window))
                frame = frame.loc[frame[PARTITION_COLUMN].astype(str).isin(window)]
                frame = frame.reset_index(drop=True)
            args.append(frame)
        fn = task.function(table)
        extra = {"partition_keys": keys} if accepts(fn, "partition_keys") else {}
        frames[table.name] = fn(*args, **extra)
    return frames


@dataclass
class LiveFeed:
    """The online store of one task, fed up to a clock. Plain Python: the CLI's `push-events`,
    tests and the live-operation scenario call it the same way."""

    task: Task
    store: FeatureStore
    read_raw: RawReader
    clock: pd.Timestamp | None = None  # every row stamped at or before it is written
    written: dict[str, int] = field(default_factory=dict)
    _tables: dict[tuple[str, ...], dict] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        from pipelines.platform.lib.online_writes import guard_online_writes

        guard_online_writes(self.store)
        self.paths = live_paths(self.task)

    def _days(self, since: pd.Timestamp, until: pd.Timestamp) -> list[str]:
        """The partitions whose rows can be stamped in (since, until]: one more on each side (a
        late landing belongs to the day before; tomorrow's schedule is published today)."""
        import pandas as pd

        first, last = self.task.partition_of(pd.Series([since, until]))
        keys = [*self.task.previous_partitions(first, LOOKBEHIND_PARTITIONS), first]
        while keys[-1] < last:
            following = self.task.next_partition(keys[-1])
            if following is None:
                break
            keys.append(following)
        for _ in range(LOOKAHEAD_PARTITIONS):
            following = self.task.next_partition(keys[-1])
            if following is None:
                break
            keys.append(following)
        return keys

    def _rows(self, days: list[str]) -> dict[str, pd.DataFrame]:
        key = tuple(days)
        if key not in self._tables:
            self._tables.clear()  # one window at a time: the feed moves forward
            self._tables[key] = compute_tables(self.task, self.read_raw, days)
        return self._tables[key]

    def advance_to(self, until) -> dict[str, int]:
        """Write every row of every live view stamped in (clock, until], the newest per entity;
        return the rows written per view. The first call starts from the longest TTL before
        `until` (static views: all)."""
        import pandas as pd

        from pipelines.platform.lib.feature_store import write_online

        until = pd.Timestamp(until)
        until = until.tz_localize("UTC") if until.tzinfo is None else until.tz_convert("UTC")
        if self.clock is not None and until < self.clock:
            raise LivePathError(f"the feed is at {self.clock}; it cannot go back to {until}")
        horizon = max((p.ttl_seconds for p in self.paths.values()), default=0.0)
        horizon = horizon or 86_400.0
        since = self.clock if self.clock is not None else until - pd.Timedelta(seconds=horizon)
        tables = self._rows(self._days(since, until))
        counts = {}
        for view, path in self.paths.items():
            if path.kind == "none" or path.table not in tables:
                continue
            frame = tables[path.table]
            stamps = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
            due = stamps <= until
            if self.clock is not None and path.kind != "static":
                due &= stamps > self.clock
            elif self.clock is not None:
                continue  # static values were written at the first call
            rows = frame.loc[due.to_numpy()]
            if rows.empty:
                continue
            rows = rows.drop(columns=[PARTITION_COLUMN], errors="ignore")
            write_online(self.store, view, rows.reset_index(drop=True))
            counts[view] = len(rows)
            self.written[view] = self.written.get(view, 0) + len(rows)
        self.clock = until
        return counts

    def clock_seconds(self) -> float | None:
        """The feed's clock as epoch seconds (what `withheld_views` compares a request with)."""
        return None if self.clock is None else self.clock.timestamp()


def feed_from_env(task: Task) -> LiveFeed:
    """The task's live feed over this environment's Feast store and landing folder (what
    `flightline push-events` and the live-operation scenario use)."""
    from pipelines.platform.lib.settings import DataPaths
    from pipelines.platform.resources_config import embedded_resources

    store = embedded_resources()["feast"].store()
    return LiveFeed(task, store, landed_reader(DataPaths.from_env().landing_for(task.name)))
