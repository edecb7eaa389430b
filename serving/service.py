"""The prediction service, one for every task: the task's champion pinned by exact tag, features
from Feast's online store through the task's FeatureService and the same task code (entity keys,
request features) as training. The request model is the task's; the answer model is generated
from its definition (score field, flags).

The task and the model tag are build arguments the `bento` asset stores in the Bento it builds
(never `:latest`); from source, FLIGHTLINE_TASK and FLIGHTLINE_BENTO_MODEL name them. Run the
built Bento with `make serve TASK=<task>`.
"""

import ctypes
import gc
import inspect
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import bentoml
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, field_validator
from starlette.responses import JSONResponse

from pipelines.platform.compat import harden_http_server
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
from serving.guard import Answer, RequestGuard, error
from serving.openapi import service_spec, state_window


class BuildArgs(BaseModel):
    # Set by the `bento` asset at build time; stored in the Bento.
    model_tag: str = ""
    task: str = ""
    # A challenger in rollout the Bento carries beside the champion (the `bento` asset).
    challenger_tag: str = ""
    rollout_stage: str = ""
    canary_share: str = ""


# A built Bento carries its task and model tag as build arguments. Variables set explicitly win:
# serving from source, and any process that built a Bento before (BentoML keeps the last build's
# arguments for the rest of the process).
ARGS = bentoml.use_arguments(BuildArgs)
TASK = load_task(os.environ.get("FLIGHTLINE_TASK") or ARGS.task or "flight_delay")
SERVING = TASK.definition.serving
BATCH_NAME = SERVING.batch_name
MODEL_TAG = os.environ.get("FLIGHTLINE_BENTO_MODEL") or ARGS.model_tag


# A time is an ISO 8601 date-time string: a digit string is not a Unix time ("no coercion").
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
ZONE = ZoneInfo(TASK.definition.partitions.timezone)
EARLIEST, LATEST = (
    date.fromisoformat(bound) if bound else None for bound in (SERVING.earliest, SERVING.latest)
)


def _iso_time(cls, value):
    """Read here (strict mode accepts a datetime object): pydantic's own reading takes a digit
    string for a Unix time."""
    if isinstance(value, str):
        try:
            if not ISO_TIME.match(value):
                raise ValueError
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{SERVING.time_field} must be an ISO 8601 date-time, got {value!r}"
            ) from None
    return value


def _within_window(cls, value: datetime) -> datetime:
    """The window is in days of the partitions' zone: an answered request's log day (its
    partition) is inside it, whatever its offset."""
    stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        day = stamp.astimezone(ZONE).date()
    except OverflowError:  # beyond year 9999 or before year 1 in the zone
        day = None
    if day is None or (EARLIEST and day < EARLIEST) or (LATEST and day >= LATEST):
        raise ValueError(
            f"{SERVING.time_field} {value.isoformat()} is outside the serving window: days "
            f"[{SERVING.earliest or '-inf'}, {SERVING.latest or '+inf'}) in {ZONE.key}"
        )
    return value


def _whole_number(cls, value):
    """JSON has one number type and JSON Schema's "integer" admits 101.0: a float with no
    fraction is that integer. Anything else (1.5, "101", true) still meets strict mode."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integer_fields(model: type[BaseModel]) -> list[str]:
    def integer(annotation) -> bool:
        return annotation is int or int in getattr(annotation, "__args__", ())

    return [name for name, field in model.model_fields.items() if integer(field.annotation)]


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
    if integers := _integer_fields(model):
        namespace["_whole_number"] = field_validator(*integers, mode="before")(_whole_number)
    if SERVING.time_field:
        namespace["_iso_time"] = field_validator(SERVING.time_field, mode="before")(_iso_time)
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
# Set by the Bento's build arguments; the variables win (serving from source, benchmarks).
CHALLENGER_TAG = os.environ.get("FLIGHTLINE_CHALLENGER_MODEL", ARGS.challenger_tag)
ROLLOUT_STAGE = os.environ.get("FLIGHTLINE_ROLLOUT_STAGE") or ARGS.rollout_stage or "shadow"
CANARY_SHARE = float(os.environ.get("FLIGHTLINE_CANARY_SHARE") or ARGS.canary_share or 0.1)


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


# A refusal is one INFO line (serving/guard.py). `bentoml serve` sets the root logger to WARNING:
# without its own level, the line went nowhere there.
logging.getLogger("flightline.serving").setLevel(logging.INFO)
# The door's deadlines: a body must arrive within BODY_TIMEOUT_S (408), an answer start within
# TIMEOUT_S (504); request headers within HEADER_TIMEOUT_S (408, then the connection is closed),
# and at most MAX_CONNECTIONS connections are open at once (503 to the next).
BODY_TIMEOUT_S = float(os.environ.get("FLIGHTLINE_SERVICE_BODY_TIMEOUT_S", "5"))
HEADER_TIMEOUT_S = float(os.environ.get("FLIGHTLINE_SERVICE_HEADER_TIMEOUT_S", "5"))
TIMEOUT_S = 10.0
MAX_CONNECTIONS = int(os.environ.get("FLIGHTLINE_SERVICE_MAX_CONNECTIONS", "1000"))


def _server_error(loc: list, msg: str, kind: str) -> bytes:
    return json.dumps({"detail": [error(loc, msg, kind)]}).encode()


# How long a worker whose parent died may take to stop gracefully before it exits hard. Its log
# is written to the kernel before each answer, and an object-store queue is drained first.
ORPHAN_GRACE_S = float(os.environ.get("FLIGHTLINE_ORPHAN_GRACE_S", "10"))
_DRAIN_BEFORE_EXIT: list = []


def _stop_with_parent() -> None:
    """A worker of `bentoml serve` outlives a SIGKILLed parent and keeps its port: it stops
    (SIGTERM: the prediction log drains) as soon as its parent is gone. Linux tells it at once
    (PR_SET_PDEATHSIG); elsewhere, and as a backstop, a thread looks every second. A graceful
    stop that is still waiting on open connections after ORPHAN_GRACE_S ends in a hard exit
    (seen under load: keep-alive clients held an orphan on its port for over 30 s)."""
    parent = os.getppid()
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE_S)
        for drain in _DRAIN_BEFORE_EXIT:
            drain()
        logging.getLogger(__name__).warning(
            "parent gone and not stopped after %.0f s: exiting", ORPHAN_GRACE_S
        )
        os._exit(0)

    if os.getppid() == parent and parent != 1:
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# The prediction routes are answered at the door (serving/guard.py) from the body it has already
# parsed and validated, once this worker's service exists: BentoML's routing and IO would parse
# the same body again and serialize the answer through its descriptors (measured:
# benchmarks/serving_load.py). Off when metrics or tracing are on, so that they see every request.
ANSWERS_AT_THE_DOOR = not (METRICS or TRACING)
DOOR_ANSWERS: dict[str, Answer] = {}


# Two workers by default: while circus restarts one that died, the other accepts from the same
# listening socket, so a connection is answered (or reset at once) instead of waiting in the
# backlog for ~40 s. Each worker holds its own model, Feast store and prediction log file.
SERVING_WORKERS = int(os.environ.get("FLIGHTLINE_SERVING_WORKERS", "2"))


@bentoml.service(
    name=f"{TASK.name}_service",
    workers=SERVING_WORKERS,
    # The door answers 504 in its own shape at TIMEOUT_S; BentoML's own is a backstop after it.
    traffic={"timeout": 30},
    metrics={"enabled": METRICS},
    tracing={} if TRACING else {"excluded_urls": [".*"]},
    # Every prediction is already in the prediction log; a second access line per request costs.
    logging={"access": {"enabled": os.environ.get("FLIGHTLINE_SERVICE_ACCESS_LOG") == "1"}},
)
class PredictionService:
    model_ref = _model_ref()
    challenger_ref = _challenger_ref()

    def __init__(self) -> None:
        if "_bentoml_impl" in sys.argv[0]:  # a worker of `bentoml serve` (python -m ...)
            _stop_with_parent()
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
        _DRAIN_BEFORE_EXIT.append(log.close)
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
if SERVING.time_field and EARLIEST and LATEST:
    for component in {Request.__name__, *(c for c in SPEC["components"]["schemas"])}:
        if SERVING.time_field in SPEC["components"]["schemas"][component].get("properties", {}):
            state_window(SPEC, component, SERVING.time_field, EARLIEST, LATEST, ZONE)
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
    body_timeout_s=BODY_TIMEOUT_S,
    timeout_s=TIMEOUT_S,
)
# uvicorn, the HTTP server under `bentoml serve`: a header-read deadline, a bound on open
# connections and its own 400s (a malformed request) in the one error shape.
harden_http_server(HEADER_TIMEOUT_S, MAX_CONNECTIONS, _server_error)


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
