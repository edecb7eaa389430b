"""Departures and landings pushed into the online store as they happen (Feast push sources), so
the operational features are fresh at request time, not only after the nightly materialization.
The rows are the ones the batch tables hold, computed by the same functions."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.tasks.flight_delay import features as F
from pipelines.tasks.flight_delay.feast_declarations import PUSH_SOURCES

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location (pandas too: issue 18).
if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

PUSH_WINDOW = timedelta(minutes=15)


def event_rows(timeline: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Push source name -> its rows, each stamped when the event became known."""
    tables = {
        "origin_recent_departures": F.origin_recent_departures(timeline),
        "aircraft_last_arrival": F.aircraft_last_arrival(timeline),
    }
    return {
        PUSH_SOURCES[name]: frame.drop(columns=[PARTITION_COLUMN], errors="ignore")
        for name, frame in tables.items()
    }


def push_in_time_order(
    store: FeatureStore,
    rows: dict[str, pd.DataFrame],
    until: pd.Timestamp | None = None,
    step: pd.Timedelta | timedelta = PUSH_WINDOW,
) -> dict[str, int]:
    """Push every event up to `until`, in windows of `step` in event-time order (a departure
    pushed before the landing that happened earlier would be a lie about the past)."""
    import pandas as pd

    step = pd.Timedelta(step)
    stamps = [f[F.EVENT_TIMESTAMP] for f in rows.values() if len(f)]
    if not stamps:
        return {name: 0 for name in rows}
    start = min(s.min() for s in stamps).floor(step)
    end = until if until is not None else max(s.max() for s in stamps)
    pushed = {name: 0 for name in rows}
    from feast.data_source import PushMode

    window = start
    while window <= end:
        upper = min(window + step, end + pd.Timedelta(microseconds=1))
        for name, frame in rows.items():
            ts = frame[F.EVENT_TIMESTAMP]
            batch = frame[(ts >= window) & (ts < upper)]
            if len(batch):
                store.push(name, batch, to=PushMode.ONLINE)
                pushed[name] += len(batch)
        window += step
    return pushed


def push_landed_events(store, landing_dir, start, end, until: str | None) -> int:
    """`flightline push-events`: each landed day's departures and landings, in time order; the
    last day stops at `until` (local HH:MM) when given."""
    import sys

    import pandas as pd

    from pipelines.platform.lib.landing import LandingError, read_landed_day
    from pipelines.tasks.flight_delay.flights import LOCAL_TZ, flight_timeline

    stop = None
    if until:
        stop = pd.Timestamp(f"{end.isoformat()}T{until}", tz=LOCAL_TZ).tz_convert("UTC")
    for day in pd.date_range(start, end).strftime("%Y-%m-%d"):
        try:
            landed = read_landed_day(landing_dir, "flights", day)
        except LandingError as exc:
            print(f"{day}: {exc}", file=sys.stderr)
            return 1
        rows = event_rows(flight_timeline(landed.frame.assign(partition_date=day)))
        pushed = push_in_time_order(store, rows, until=stop if day == end.isoformat() else None)
        print(f"{day}: pushed " + ", ".join(f"{n:,} {name}" for name, n in pushed.items()))
    return 0
