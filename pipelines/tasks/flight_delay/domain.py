"""What the platform calls to turn a flight (a training example or a request) into the keys
Feast joins on and the features computed from the flight itself."""

import pandas as pd

from pipelines.platform.lib.task import TaskDomain
from pipelines.tasks.flight_delay.feast_declarations import feature_definitions, served_features
from pipelines.tasks.flight_delay.features import departure_hour_key, request_features
from pipelines.tasks.flight_delay.flights import UNKNOWN_TAILNUM
from pipelines.tasks.flight_delay.live_events import push_landed_events
from pipelines.tasks.flight_delay.replay import replay_days
from pipelines.tasks.flight_delay.source import read_table

FLIGHT_FIELDS = ("carrier", "flight", "tailnum", "origin", "dest", "sched_dep_ts", "distance")


def flights_frame(flights: pd.DataFrame) -> pd.DataFrame:
    """Normalize flights: UTC departure time, text keys, the route."""
    frame = flights.loc[:, list(FLIGHT_FIELDS)].copy()
    frame["sched_dep_ts"] = pd.to_datetime(frame["sched_dep_ts"], utc=True)
    frame["tailnum"] = frame["tailnum"].fillna(UNKNOWN_TAILNUM).astype(str)
    frame["route"] = frame["origin"].astype(str) + "-" + frame["dest"].astype(str)
    return frame.reset_index(drop=True)


def entity_keys(flights: pd.DataFrame) -> pd.DataFrame:
    """The join keys of every feature view of the FeatureService."""
    return pd.DataFrame(
        {
            "origin": flights["origin"].astype(str),
            "tailnum": flights["tailnum"].astype(str),
            "carrier": flights["carrier"].astype(str),
            "route": flights["route"].astype(str),
            "dep_hour": departure_hour_key(flights["sched_dep_ts"]),
        }
    ).reset_index(drop=True)


DOMAIN = TaskDomain(
    request_frame=flights_frame,
    entity_keys=entity_keys,
    request_features=request_features,
    feature_definitions=feature_definitions,
    served_features=served_features,
    read_reference=read_table,
    replay=replay_days,
    push_events=push_landed_events,
    warm_up_request={
        "carrier": "UA",
        "flight": 1,
        "tailnum": None,
        "origin": "EWR",
        "dest": "IAH",
        "sched_dep_ts": pd.Timestamp("2013-01-01T12:00", tz="UTC"),
        "distance": 1400.0,
    },
)
