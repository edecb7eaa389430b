"""What the platform calls to turn a flight (a training example or a request) into the keys
Feast joins on and the features computed from the flight itself."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pipelines.platform.lib.task import TaskDomain
from pipelines.tasks.flight_delay.feast_declarations import feature_definitions, served_features
from pipelines.tasks.flight_delay.features import LOCAL_TZ, departure_hour_key, request_features
from pipelines.tasks.flight_delay.flights import UNKNOWN_TAILNUM
from pipelines.tasks.flight_delay.replay import replay_days
from pipelines.tasks.flight_delay.source import read_table

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd

FLIGHT_FIELDS = ("carrier", "flight", "tailnum", "origin", "dest", "sched_dep_ts", "distance")


def flights_frame(flights: pd.DataFrame) -> pd.DataFrame:
    """Normalize flights: UTC departure time, text keys, the route."""
    import pandas as pd

    frame = flights.loc[:, list(FLIGHT_FIELDS)].copy()
    frame["sched_dep_ts"] = pd.to_datetime(frame["sched_dep_ts"], utc=True)
    frame["tailnum"] = frame["tailnum"].fillna(UNKNOWN_TAILNUM).astype(str)
    frame["route"] = frame["origin"].astype(str) + "-" + frame["dest"].astype(str)
    return frame.reset_index(drop=True)


def entity_keys(flights: pd.DataFrame) -> pd.DataFrame:
    """The join keys of every feature view of the FeatureService."""
    import pandas as pd

    return pd.DataFrame(
        {
            "origin": flights["origin"].astype(str),
            "tailnum": flights["tailnum"].astype(str),
            "carrier": flights["carrier"].astype(str),
            "route": flights["route"].astype(str),
            "dest": flights["dest"].astype(str),
            "dep_hour": departure_hour_key(flights["sched_dep_ts"]),
        }
    ).reset_index(drop=True)


NEW_YORK = ZoneInfo(LOCAL_TZ)


def request_row(flight: dict) -> tuple[dict, dict]:
    """One flight's `entity_keys` and `request_features` row, without pandas (same values)."""
    when = flight["sched_dep_ts"]
    if not isinstance(when, datetime):  # text, as a frame would parse it
        import pandas as pd

        when = pd.Timestamp(when)
    local = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(NEW_YORK)
    tailnum = flight.get("tailnum")
    if tailnum is None or (isinstance(tailnum, float) and math.isnan(tailnum)):
        tailnum = UNKNOWN_TAILNUM
    carrier, origin, dest = str(flight["carrier"]), str(flight["origin"]), str(flight["dest"])
    keys = {
        "origin": origin,
        "tailnum": str(tailnum),
        "carrier": carrier,
        "route": f"{origin}-{dest}",
        "dest": dest,
        "dep_hour": local.strftime("%Y-%m-%dT%H"),
    }
    features = {
        "carrier": carrier,
        "origin": origin,
        "dest": dest,
        "distance": float(flight["distance"]),
        "sched_dep_hour": local.hour,
        "sched_dep_minute_of_day": local.hour * 60 + local.minute,
        "day_of_week": local.weekday(),
        "month": local.month,
    }
    return keys, features


DOMAIN = TaskDomain(
    request_frame=flights_frame,
    entity_keys=entity_keys,
    request_features=request_features,
    feature_definitions=feature_definitions,
    served_features=served_features,
    read_reference=read_table,
    replay=replay_days,
    request_row=request_row,
    warm_up_request={
        "carrier": "UA",
        "flight": 1,
        "tailnum": None,
        "origin": "EWR",
        "dest": "IAH",
        "sched_dep_ts": datetime(2013, 1, 1, 12, tzinfo=UTC),
        "distance": 1400.0,
    },
)
