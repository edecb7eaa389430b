"""The flight-delay prediction service: the champion pinned by exact tag, features from Feast's
online store through the same FeatureService and request-feature code as training.

The model tag is a build argument the `bento` asset stores in the Bento it builds (never
`:latest`); from source, FLIGHTLINE_BENTO_MODEL names it. Run the built Bento with `make serve`.
"""

import os
from typing import Annotated

import bentoml
import pandas as pd
from bentoml.exceptions import InvalidArgument
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from pipelines.platform.lib.feature_store import location_from_paths, open_store
from pipelines.platform.lib.prediction_log import PredictionLogWriter
from pipelines.platform.lib.predictor import (
    FeatureStoreUnavailable,
    ModelInfo,
    ModelUnavailable,
    Predictor,
)
from pipelines.platform.lib.services import check_redis, check_uri
from pipelines.platform.lib.settings import DataPaths
from pipelines.tasks import TASKS
from serving.schemas import MAX_BATCH, Flight, Prediction, Readiness

SPEC = TASKS[0]


class BuildArgs(BaseModel):
    model_tag: str = ""  # set by the `bento` asset at build time; stored in the Bento


# The Bento carries its model tag as a build argument; serving from source reads the environment.
MODEL_TAG = bentoml.use_arguments(BuildArgs).model_tag or os.environ.get(
    "FLIGHTLINE_BENTO_MODEL", ""
)


def _model_ref():
    if not MODEL_TAG or MODEL_TAG.endswith(":latest") or ":" not in MODEL_TAG:
        raise RuntimeError(
            f"FLIGHTLINE_BENTO_MODEL must name an exact BentoML model tag (name:version), got {MODEL_TAG!r}"
        )
    return bentoml.models.BentoModel(MODEL_TAG)


# BentoML's Prometheus metrics cost several ms per request here (multiprocess histograms), more
# than the whole lookup + predict: off unless FLIGHTLINE_SERVICE_METRICS=1.
@bentoml.service(
    name="flight_delay_service",
    workers=1,
    traffic={"timeout": 10},
    metrics={"enabled": os.environ.get("FLIGHTLINE_SERVICE_METRICS") == "1"},
    # Every prediction is already in the prediction log; a second access line per request costs.
    logging={"access": {"enabled": os.environ.get("FLIGHTLINE_SERVICE_ACCESS_LOG") == "1"}},
)
class FlightDelayService:
    model_ref = _model_ref()

    def __init__(self) -> None:
        paths = DataPaths.from_env()
        stored = bentoml.models.get(self.model_ref.tag)
        info = ModelInfo(
            name=stored.info.labels.get("task", SPEC.name),
            version=stored.info.labels.get("mlflow_version", "?"),
            bento_model_tag=str(stored.tag),
        )
        model = _TypedFeatures(bentoml.mlflow.load_model(stored))
        location = location_from_paths(paths)
        # Production profile: wrong credentials for the registry's PostgreSQL stop the service
        # here, naming the URL. Redis may come and go: readiness and predict answer 503 with
        # the reason meanwhile, and recover when it is back (redis-py reconnects).
        check_uri(location.registry_path if location.sql_registry else None)
        redis_url = location.redis_url
        try:
            store = open_store(location)
        except Exception:
            store = None
        log = PredictionLogWriter(paths.root / "prediction_log")
        self.predictor = Predictor(
            SPEC,
            store,
            model,
            info,
            log=log,
            probe=(lambda: check_redis(redis_url)) if redis_url else None,
        )
        if store is not None and self.predictor.check()["ready"]:
            self.predictor.warm_up()

    def _answer(self, flights: list[Flight]) -> list[Prediction]:
        frame = pd.DataFrame(
            [
                {**f.model_dump(exclude={"sched_dep"}), "sched_dep_ts": _as_utc(f.sched_dep)}
                for f in flights
            ]
        )
        try:
            return [Prediction(**r) for r in self.predictor.predict(frame)]
        except (FeatureStoreUnavailable, ModelUnavailable) as exc:
            return _unavailable(str(exc))

    @bentoml.api
    def predict(self, flight: Flight) -> Prediction:
        """Delay probability of one flight."""
        answer = self._answer([flight])
        return answer if isinstance(answer, JSONResponse) else answer[0]

    @bentoml.api
    def predict_batch(
        self, flights: Annotated[list[Flight], Field(min_length=1, max_length=MAX_BATCH)]
    ) -> list[Prediction]:
        """Delay probabilities of up to 1000 flights in one call."""
        return self._answer(flights)

    @bentoml.api(route="/ready", input_spec=None)
    def ready(self) -> Readiness:
        """Whether the model and the feature store are usable (503 with the reason if not)."""
        status = self.predictor.check()
        if not status["ready"]:
            return _unavailable(
                f"not ready: {status.get('feature_store_error') or 'model not loaded'}"
            )
        return Readiness(**status)


class _TypedFeatures:
    """The MLflow pyfunc's classifier called directly: pyfunc.predict re-checks the signature on
    every call (~2 ms); the online path has already typed the features with the same code."""

    def __init__(self, pyfunc) -> None:
        self.classifier = pyfunc.unwrap_python_model().classifier

    def predict(self, features: pd.DataFrame):
        return self.classifier.predict_proba(features)


def _unavailable(reason: str) -> JSONResponse:
    # BentoML hides the message of any 5xx it renders itself; the reason is the point here.
    return JSONResponse({"error": "service unavailable", "reason": reason}, status_code=503)


def _as_utc(moment) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:  # a wall-clock time is New York local time
        stamp = stamp.tz_localize("America/New_York", ambiguous="NaT", nonexistent="NaT")
        if pd.isna(stamp):
            raise InvalidArgument(
                "sched_dep: a local time that does not exist or is ambiguous (DST)"
            )
    return stamp.tz_convert("UTC")
