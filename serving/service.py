"""The prediction service, one for every task: the task's champion pinned by exact tag, features
from Feast's online store through the task's FeatureService and the same task code (entity keys,
request features) as training. The request model is the task's; the answer model is generated
from its definition (score field, flags).

The task and the model tag are build arguments the `bento` asset stores in the Bento it builds
(never `:latest`); from source, FLIGHTLINE_TASK and FLIGHTLINE_BENTO_MODEL name them. Run the
built Bento with `make serve TASK=<task>`.
"""

import gc
import inspect
import os
from datetime import UTC, datetime
from typing import Annotated

import bentoml
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, field_validator
from starlette.responses import JSONResponse

from pipelines.platform.components.definition import load_reference
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.feature_store import location_from_paths, open_store
from pipelines.platform.lib.live import unavailable_views
from pipelines.platform.lib.prediction_log import PredictionLogWriter
from pipelines.platform.lib.predictor import (
    LIVE_SOURCE,
    TRAFFIC_SOURCE_ENV,
    Challenger,
    FeatureStoreUnavailable,
    ModelInfo,
    ModelUnavailable,
    Predictor,
)
from pipelines.platform.lib.services import check_redis, check_uri
from pipelines.platform.lib.settings import DataPaths
from serving.guard import Answer, RequestGuard
from serving.openapi import service_spec


class BuildArgs(BaseModel):
    # Set by the `bento` asset at build time; stored in the Bento.
    model_tag: str = ""
    task: str = ""


# A built Bento carries its task and model tag as build arguments. Variables set explicitly win:
# serving from source, and any process that built a Bento before (BentoML keeps the last build's
# arguments for the rest of the process).
ARGS = bentoml.use_arguments(BuildArgs)
TASK = load_task(os.environ.get("FLIGHTLINE_TASK") or ARGS.task or "flight_delay")
SERVING = TASK.definition.serving
BATCH_NAME = SERVING.batch_name
MODEL_TAG = os.environ.get("FLIGHTLINE_BENTO_MODEL") or ARGS.model_tag


def _strict(model: type[BaseModel]) -> type[BaseModel]:
    """The task's request model at the door: no type coercion ("1990" is not a distance), no
    field it does not declare, finite numbers only, and its time within the serving window."""
    namespace: dict = {
        "__module__": model.__module__,
        "__doc__": model.__doc__,
        "model_config": ConfigDict(
            **{**model.model_config, "strict": True, "extra": "forbid", "allow_inf_nan": False}
        ),
    }
    if SERVING.time_field and SERVING.time_field not in model.model_fields:
        raise RuntimeError(
            f"task {TASK.name}: serving.time_field {SERVING.time_field!r} is not a field of "
            f"{model.__name__}"
        )
    if SERVING.time_field:
        earliest, latest = (
            datetime.fromisoformat(bound).replace(tzinfo=UTC) if bound else None
            for bound in (SERVING.earliest, SERVING.latest)
        )

        def _within_window(cls, value: datetime) -> datetime:
            stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
            if (earliest and stamp < earliest) or (latest and stamp >= latest):
                raise ValueError(
                    f"{SERVING.time_field} {value.isoformat()} is outside the serving window "
                    f"[{SERVING.earliest or '-inf'}, {SERVING.latest or '+inf'}) UTC"
                )
            return value

        namespace["_within_serving_window"] = field_validator(SERVING.time_field)(_within_window)
    return type(model.__name__, (model,), namespace)


Request = _strict(load_reference(SERVING.request_model, f"task {TASK.name}: serving.request_model"))
# The whole bodies, as strict as the request (an unknown top-level field is refused too).
_BODY_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
PredictBody = create_model(
    "PredictBody", __config__=_BODY_CONFIG, **{SERVING.request_name: (Request, ...)}
)
PredictBatchBody = create_model(
    "PredictBatchBody",
    __config__=_BODY_CONFIG,
    **{
        BATCH_NAME: (
            Annotated[list[Request], Field(min_length=1, max_length=SERVING.max_batch)],
            ...,
        )
    },
)

Prediction = create_model(
    "Prediction",
    **{
        SERVING.score_field: (float, Field(description=SERVING.score_description)),
        "model_name": (str, ...),
        "model_version": (str, Field(description="MLflow model version that answered")),
        "feature_age_seconds": (
            dict[str, float | None],
            Field(
                description="Per feature view, the age of the value used at prediction time; "
                "null if none"
            ),
        ),
        **{
            flag: (bool, Field(description=f"The feature store knew nothing in {view}"))
            for flag, view in SERVING.flags.items()
        },
        "point_in_time": (
            bool,
            Field(description="Every value served was known at the prediction time"),
        ),
        "withheld_views": (
            list[str],
            Field(
                description="Views whose stored value is from after the prediction time: "
                "withheld (served as missing), so the answer is not point-in-time"
            ),
        ),
        "unavailable_views": (
            list[str],
            Field(
                default=[],
                description="Views the task declares without a live path: not served online "
                "(their features are missing), never a silent null",
            ),
        ),
    },
)


class FeatureVector(BaseModel):
    """What the online lookup gives one request: the model's input (missing: null) and each
    view's age, with the point-in-time flags."""

    features: dict[str, str | float | None]
    feature_age_seconds: dict[str, float | None]
    point_in_time: bool
    withheld_views: list[str]


class Readiness(BaseModel):
    ready: bool
    model: str
    model_ok: bool
    feature_store_ok: bool
    feature_store_error: str | None = None


def _model_ref():
    if not MODEL_TAG or MODEL_TAG.endswith(":latest") or ":" not in MODEL_TAG:
        raise RuntimeError(
            f"FLIGHTLINE_BENTO_MODEL must name an exact BentoML model tag (name:version), got {MODEL_TAG!r}"
        )
    return bentoml.models.BentoModel(MODEL_TAG)


# A challenger in rollout beside the champion (docs/rollout-and-alerts.md): its exact model tag,
# its stage (shadow: the champion answers; canary: a stable hash of the task's canary entity picks
# the model per entity) and the canary's share of entities.
CHALLENGER_TAG = os.environ.get("FLIGHTLINE_CHALLENGER_MODEL", "")
ROLLOUT_STAGE = os.environ.get("FLIGHTLINE_ROLLOUT_STAGE", "shadow")
CANARY_SHARE = float(os.environ.get("FLIGHTLINE_CANARY_SHARE") or 0.1)


def _challenger_ref():
    if not CHALLENGER_TAG:
        return None
    if CHALLENGER_TAG.endswith(":latest") or ":" not in CHALLENGER_TAG:
        raise RuntimeError(
            "FLIGHTLINE_CHALLENGER_MODEL must name an exact BentoML model tag (name:version), "
            f"got {CHALLENGER_TAG!r}"
        )
    return bentoml.models.BentoModel(CHALLENGER_TAG)


def _load(tag) -> tuple[ModelInfo, "_TypedFeatures"]:
    stored = bentoml.models.get(tag)
    info = ModelInfo(
        name=stored.info.labels.get("task", TASK.name),
        version=stored.info.labels.get("mlflow_version", "?"),
        bento_model_tag=str(stored.tag),
    )
    return info, _TypedFeatures(bentoml.mlflow.load_model(stored))


def _with_request(func, name: str, annotation, returns):
    """The API takes the task's request under its own field name (`{"flight": {...}}`):
    BentoML reads the parameters from the signature, so the signature says so."""
    func.__signature__ = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation),
        ],
        return_annotation=returns,
    )
    return func


# BentoML's Prometheus metrics cost several ms per request here (multiprocess histograms), more
# than the whole lookup + predict: off unless FLIGHTLINE_SERVICE_METRICS=1.
METRICS = os.environ.get("FLIGHTLINE_SERVICE_METRICS") == "1"
# OpenTelemetry spans cost ~10% of a request's CPU (profiled) and go nowhere unless an exporter
# is configured: every URL excluded unless FLIGHTLINE_SERVICE_TRACING=1.
TRACING = os.environ.get("FLIGHTLINE_SERVICE_TRACING") == "1"


# The prediction routes are answered at the door (serving/guard.py) from the body it has already
# parsed and validated, once this worker's service exists: BentoML's routing and IO would parse
# the same body again and serialize the answer through its descriptors (measured:
# benchmarks/serving_load.py). Off when metrics or tracing are on, so that they see every request.
ANSWERS_AT_THE_DOOR = not (METRICS or TRACING)
DOOR_ANSWERS: dict[str, Answer] = {}


@bentoml.service(
    name=f"{TASK.name}_service",
    workers=1,
    traffic={"timeout": 10},
    metrics={"enabled": METRICS},
    tracing={} if TRACING else {"excluded_urls": [".*"]},
    # Every prediction is already in the prediction log; a second access line per request costs.
    logging={"access": {"enabled": os.environ.get("FLIGHTLINE_SERVICE_ACCESS_LOG") == "1"}},
)
class PredictionService:
    model_ref = _model_ref()
    challenger_ref = _challenger_ref()

    def __init__(self) -> None:
        paths = DataPaths.from_env()
        info, model = _load(self.model_ref.tag)
        challenger = None
        if self.challenger_ref is not None:
            challenger_info, challenger_model = _load(self.challenger_ref.tag)
            challenger = Challenger(
                challenger_model,
                challenger_info,
                ROLLOUT_STAGE,
                CANARY_SHARE,
                SERVING.canary_entity,
            )
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
        log = PredictionLogWriter(paths.prediction_log_for(TASK.name))
        self.predictor = Predictor(
            TASK.spec,
            TASK.domain,
            store,
            model,
            info,
            log=log,
            probe=(lambda: check_redis(redis_url)) if redis_url else None,
            score_field=SERVING.score_field,
            flags=SERVING.flags,
            challenger=challenger,
            partition_of=TASK.partition_of,
            source=os.environ.get(TRAFFIC_SOURCE_ENV, LIVE_SOURCE),
            unavailable=unavailable_views(TASK),
        )
        if store is not None and self.predictor.check()["ready"]:
            self.predictor.warm_up()
        # Feast, MLflow and torch leave millions of long-lived objects: a full collection that
        # walks them stalls a request for tens of ms. Frozen, the collector skips them.
        gc.collect()
        gc.freeze()
        if ANSWERS_AT_THE_DOOR:
            DOOR_ANSWERS.update(
                {
                    "/predict": lambda body: _encoded(
                        self._answer([getattr(body, SERVING.request_name)]), single=True
                    ),
                    "/predict_batch": lambda body: _encoded(
                        self._answer(getattr(body, BATCH_NAME))
                    ),
                    "/features": lambda body: _encoded(
                        self._lookup(getattr(body, SERVING.request_name))
                    ),
                }
            )

    @bentoml.on_shutdown
    def drain_prediction_log(self) -> None:
        # BentoML's worker exits without running atexit hooks (measured: a SIGTERM'd `bentoml
        # serve` lost the records of its last flush interval); its shutdown hook does run.
        self.predictor.log.close()

    def _answer(self, requests: list) -> list:
        try:
            return [Prediction(**r) for r in self.predictor.predict([r.to_row() for r in requests])]
        except (FeatureStoreUnavailable, ModelUnavailable) as exc:
            return _unavailable(str(exc))

    # The API methods are coroutines: a prediction is about a millisecond of CPU, less than the
    # hop to a worker thread and back (and two threads contending for the interpreter).
    async def predict(self, **body):
        """One prediction."""
        answer = self._answer([body[SERVING.request_name]])
        return answer if isinstance(answer, JSONResponse) else answer[0]

    predict = bentoml.api(_with_request(predict, SERVING.request_name, Request, Prediction))

    async def predict_batch(self, **body):
        """Up to `max_batch` predictions in one call."""
        return self._answer(body[BATCH_NAME])

    predict_batch = bentoml.api(
        _with_request(
            predict_batch,
            BATCH_NAME,
            Annotated[list[Request], Field(min_length=1, max_length=SERVING.max_batch)],
            list[Prediction],
        )
    )

    def _lookup(self, request):
        try:
            [vector] = self.predictor.lookup([request.to_row()])
        except FeatureStoreUnavailable as exc:
            return _unavailable(str(exc))
        return FeatureVector(**vector)

    async def features(self, **body):
        """The online lookup alone for one request: its feature vector, nothing predicted."""
        return self._lookup(body[SERVING.request_name])

    features = bentoml.api(_with_request(features, SERVING.request_name, Request, FeatureVector))

    @bentoml.api(route="/ready", input_spec=None)
    def ready(self) -> Readiness:
        """Whether the model and the feature store are usable (503 with the reason if not)."""
        status = self.predictor.check()
        if not status["ready"]:
            return _unavailable(
                f"not ready: {status.get('feature_store_error') or 'model not loaded'}"
            )
        return Readiness(**status)


SPEC = service_spec(
    title=f"{TASK.name}_service",
    description=TASK.definition.description,
    version=MODEL_TAG.partition(":")[2] or "unknown",
    apis={
        "/predict": (PredictBody, Prediction, "One prediction."),
        "/predict_batch": (
            PredictBatchBody,
            list[Prediction],
            f"Up to {SERVING.max_batch} predictions in one call.",
        ),
        "/features": (PredictBody, FeatureVector, "The online lookup alone for one request."),
        "/ready": (None, Readiness, "Whether the model and the feature store are usable."),
    },
    readiness=Readiness,
    infra={
        "/livez": "The process is alive",
        "/readyz": "The service has started",
        "/healthz": "Same as /livez",
        **({"/metrics": "Prometheus metrics"} if METRICS else {}),
    },
)
PredictionService.add_asgi_middleware(
    RequestGuard,
    bodies={
        "/predict": PredictBody,
        "/predict_batch": PredictBatchBody,
        "/features": PredictBody,
        "/ready": None,
    },
    max_body_bytes=SERVING.max_body_bytes,
    batch_name=BATCH_NAME,
    spec=SPEC,
    answers=DOOR_ANSWERS,
)


class _TypedFeatures:
    """The MLflow pyfunc's classifier called directly: pyfunc.predict re-checks the signature on
    every call (~2 ms); the online path has already typed the features with the same code."""

    def __init__(self, pyfunc) -> None:
        self.classifier = pyfunc.unwrap_python_model().classifier
        if hasattr(self.classifier, "predict_records"):  # scores plain records, no frame
            self.predict_records = self.classifier.predict_records

    def predict(self, features: pd.DataFrame):
        return self.classifier.predict_proba(features)


_PREDICTIONS = TypeAdapter(list[Prediction])


def _encoded(answer, single: bool = False) -> tuple[int, bytes]:
    """An API method's answer as the door sends it: what BentoML would have rendered."""
    if isinstance(answer, JSONResponse):
        return answer.status_code, bytes(answer.body)
    if isinstance(answer, BaseModel):
        return 200, answer.model_dump_json().encode()
    if single:
        return 200, answer[0].model_dump_json().encode()
    return 200, _PREDICTIONS.dump_json(answer)


def _unavailable(reason: str) -> JSONResponse:
    # BentoML hides the message of any 5xx it renders itself; the reason is the point here.
    return JSONResponse({"error": "service unavailable", "reason": reason}, status_code=503)
