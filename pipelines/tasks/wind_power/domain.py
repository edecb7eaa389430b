"""What the platform calls to turn a turbine at an instant (a training example or a request) into
the keys Feast joins on and the features computed from the request itself."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.platform.lib.task import TaskDomain
from pipelines.tasks.wind_power.feast_declarations import feature_definitions, served_features
from pipelines.tasks.wind_power.features import entity_keys, request_features, request_frame
from pipelines.tasks.wind_power.replay import replay_days

DOMAIN = TaskDomain(
    request_frame=request_frame,
    entity_keys=entity_keys,
    request_features=request_features,
    feature_definitions=feature_definitions,
    served_features=served_features,
    replay=replay_days,
    warm_up_request={
        "turbine": "R80711",
        "predicted_at": datetime(2014, 10, 15, 12, tzinfo=UTC),
    },
)
