"""What the service does per request, without the HTTP layer: online features for the requests,
the pinned model's probabilities, the feature ages, and a record for the prediction log."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.platform.lib.online import (
    OnlineVector,
    epoch_array,
    epoch_seconds,
    feature_age_seconds,
    online_records,
    online_vector,
)
from pipelines.platform.lib.prediction_log import PredictionLogWriter
from pipelines.platform.lib.rollout import answers_with_challenger
from pipelines.platform.lib.task import TaskDomain, TaskSpec

# Feast (6-9 s of imports, torch included) is loaded by whoever opens the store; this module only
# receives one, so importing it stays cheap for the code location.
if TYPE_CHECKING:
    from feast import FeatureStore


class FeatureStoreUnavailable(RuntimeError):
    pass


class ModelUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str  # registered model (the task)
    version: str  # MLflow model version
    bento_model_tag: str  # the exact BentoML model tag the service was built with


LIVE_SOURCE = "live"
TRAFFIC_SOURCES = (LIVE_SOURCE, "benchmark", "test", "replay")
# A process that serves other than real traffic says so (benchmarks, tests, replays).
TRAFFIC_SOURCE_ENV = "FLIGHTLINE_TRAFFIC_SOURCE"


class Predictor:
    def __init__(
        self,
        spec: TaskSpec,
        domain: TaskDomain,
        store: "FeatureStore | None",
        model,
        info: ModelInfo,
        log: PredictionLogWriter | None = None,
        clock=None,
        probe: Callable[[], None] | None = None,
        score_field: str = "probability",
        flags: dict[str, str] | None = None,
        challenger: "Challenger | None" = None,
        partition_of: Callable[[pd.Series], list[str]] | None = None,
        source: str = LIVE_SOURCE,
        unavailable: tuple[str, ...] = (),
        store_clock: Callable[[], float | None] | None = None,
    ):
        if source not in TRAFFIC_SOURCES:
            raise ValueError(f"traffic source {source!r}: one of {', '.join(TRAFFIC_SOURCES)}")
        # Where this predictor's traffic comes from, written on every log row: monitoring
        # judges `live` rows only (benchmarks, tests and replays write their own).
        self.source = source
        self.spec = spec
        self.challenger = challenger
        self.domain = domain
        self.score_field = score_field  # the name of the probability in each answer
        self.flags = flags or {}  # answer field -> feature view: true when the store knew nothing
        # The prediction log's partition of each answer (the task's partitions, by timestamp).
        self.partition_of = partition_of or (
            lambda ts: ts.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d").tolist()
        )
        # Pings the online store's server (Redis): readiness asks it, and a failed lookup asks
        # it for a clearer reason ("online store unreachable: redis://...").
        self.probe = probe
        self.store = store
        self.model = model
        self.info = info
        self.log = log
        # The replayed clock: feature ages are measured against the request's prediction time
        # unless a clock is given (a live deployment passes wall-clock time).
        self.clock = clock
        # Views the task declares without a live path: never served, reported in every answer.
        self.unavailable = tuple(unavailable)
        # Epoch seconds the online store is fed up to (a LiveFeed's clock), when known: a request
        # behind it is flagged from that fact alone (see `_behind`).
        self.store_clock = store_clock
        self._day_cache: dict[int, str] = {}

    def check(self) -> dict:
        """Readiness: the model answers and the store serves a lookup."""
        status = {
            "model": f"{self.info.name} v{self.info.version}",
            "model_ok": self.model is not None,
        }
        try:
            if self.store is None:
                raise FeatureStoreUnavailable("no feature store configured")
            self.store.get_feature_service(self.spec.feature_service)
            self.store.list_feature_views()
            if self.probe is not None:
                self.probe()
            status["feature_store_ok"] = True
        except Exception as exc:
            status["feature_store_ok"] = False
            status["feature_store_error"] = f"{type(exc).__name__}: {exc}"
        status["ready"] = status["model_ok"] and status["feature_store_ok"]
        return status

    def warm_up(self, rounds: int = 20) -> None:
        """The first lookups of a process cost several ms each (connections, caches): pay them
        at start-up, not on the first requests."""
        if not self.domain.warm_up_request:
            return
        probe = pd.DataFrame([self.domain.warm_up_request])
        log, self.log = self.log, None  # probes are not predictions
        try:
            for _ in range(rounds):
                self.predict(probe)
        finally:
            self.log = log

    def predict(self, requests: pd.DataFrame | list[dict]) -> list[dict]:
        """`requests`: raw rows (a frame, or dicts as the service hands them). A task with a
        `request_row` is answered without pandas (`online_records`)."""
        started = time.perf_counter()
        if self.model is None:
            raise ModelUnavailable(f"model {self.info.bento_model_tag} is not loaded")
        records, when, as_of, vector = self._vector(requests)
        probabilities = np.asarray(self._scores(vector), dtype="float64")
        rollout = self._challenger_scores(records, vector, probabilities)
        versions = [self.info.version] * len(probabilities)
        if rollout is not None:
            probabilities, versions = rollout["answered"], rollout["versions"]
        # Ages at the moment of prediction (the task's rule on the replayed clock).
        now = self.clock() if self.clock else as_of
        ages = feature_age_seconds(vector, now)
        flags = {name: vector.missing(view) for name, view in self.flags.items()}
        withheld = self._withheld(vector, as_of)
        results = [
            {
                self.score_field: float(p),
                "model_name": self.info.name,
                "model_version": version,
                "feature_age_seconds": age,
                **{name: bool(values[i]) for name, values in flags.items()},
                # values from after the prediction time were withheld: not point-in-time
                "point_in_time": not withheld[i],
                "withheld_views": withheld[i],
                **({"unavailable_views": list(self.unavailable)} if self.unavailable else {}),
            }
            for i, (p, age, version) in enumerate(zip(probabilities, ages, versions, strict=True))
        ]
        if self.log is not None:
            self._log(
                records,
                when,
                vector,
                results,
                (time.perf_counter() - started) * 1000,
                rollout["logged"] if rollout is not None else None,
            )
        return results

    def _challenger_scores(self, records: list[dict], vector: OnlineVector, champion):
        """With a challenger: what each request is answered with, by which version, and both
        scores for the log."""
        challenger = self.challenger
        if challenger is None:
            return None
        scores = np.asarray(self._scores(vector, challenger.model), dtype="float64")
        if challenger.stage == "canary":
            salt = challenger.info.version
            served = np.array(
                [
                    answers_with_challenger(str(r.get(challenger.entity)), salt, challenger.share)
                    for r in records
                ],
                dtype=bool,
            )
        else:
            served = np.zeros(len(scores), dtype=bool)
        versions = [challenger.info.version if s else self.info.version for s in served]
        logged = [
            {
                "rollout_stage": challenger.stage,
                "champion_version": self.info.version,
                "champion_score": float(c),
                "challenger_version": challenger.info.version,
                "challenger_score": float(x),
                "served_by": "challenger" if s else "champion",
            }
            for c, x, s in zip(champion, scores, served, strict=True)
        ]
        return {
            "answered": np.where(served, scores, champion),
            "versions": versions,
            "logged": logged,
        }

    def lookup(self, requests: pd.DataFrame | list[dict]) -> list[dict]:
        """The online lookup alone: per request, the model input it would get (missing: None)
        and each view's age; nothing is predicted or logged."""
        _, _, as_of, vector = self._vector(requests)
        ages = feature_age_seconds(vector, self.clock() if self.clock else as_of)
        withheld = self._withheld(vector, as_of)
        return [
            {
                "features": {k: (None if v != v else v) for k, v in record.items()},  # NaN: None
                "feature_age_seconds": age,
                "point_in_time": not withheld[i],
                "withheld_views": withheld[i],
            }
            for i, (record, age) in enumerate(zip(vector.records, ages, strict=True))
        ]

    def _withheld(self, vector: OnlineVector, as_of: np.ndarray) -> list[list[str]]:
        """Per request, the views that may hold a value from after its prediction time. With a
        known store clock (a live feed's, or wall-clock time in a deployment) this depends only
        on the request being behind that clock, never on whether a later value exists (issue
        24): every fed view is named. Without one, the views whose stored value is later."""
        clock = self.store_clock() if self.store_clock else None
        if clock is None and self.clock is not None:
            clock = self.clock()
        if clock is None:
            return vector.withheld_views()
        if not isinstance(clock, (int, float)):
            clock = pd.Timestamp(clock).timestamp()
        fed = [v for v in vector.known_at if v not in self.unavailable]
        return [fed if at < clock else [] for at in np.asarray(as_of, dtype="float64")]

    def _vector(self, requests: pd.DataFrame | list[dict]):
        """The requests as records, their timestamps and prediction times (epoch seconds), and
        their online feature vector."""
        if self.store is None:
            raise FeatureStoreUnavailable("no feature store configured")
        fast = self.domain.request_row is not None
        if fast:
            records = (
                requests.to_dict(orient="records")
                if isinstance(requests, pd.DataFrame)
                else requests
            )
            when = np.array(
                [epoch_seconds(r[self.spec.timestamp_column]) for r in records], dtype="float64"
            )
            as_of = when - self.spec.lead_minutes * 60  # the task's prediction-time rule
        else:
            frame = requests if isinstance(requests, pd.DataFrame) else pd.DataFrame(requests)
            records = frame.reset_index(drop=True).to_dict(orient="records")
            rows = self.domain.request_frame(frame)
            stamps = pd.to_datetime(rows[self.spec.timestamp_column], utc=True)
            when = epoch_array(stamps.reset_index(drop=True), len(rows))
            as_of = epoch_array(self.spec.prediction_time(stamps), len(rows))
        try:
            if fast:
                vector = online_records(
                    self.store, records, self.spec, self.domain, as_of, self.unavailable
                )
            else:
                vector = online_vector(
                    self.store, rows, self.spec, self.domain, unavailable=self.unavailable
                )
        except Exception as exc:
            self._raise_if_unreachable()
            raise FeatureStoreUnavailable(
                f"online feature lookup failed: {type(exc).__name__}: {exc}"
            ) from exc
        return records, when, as_of, vector

    def _scores(self, vector: OnlineVector, model=None):
        # A model that scores plain records (LightGBM here) skips building a frame.
        model = self.model if model is None else model
        by_records = getattr(model, "predict_records", None)
        return by_records(vector.records) if by_records else model.predict(vector.features)

    def _days(self, when: np.ndarray) -> list[str]:
        """The log partition of each instant. Partition bounds fall on whole quarter hours in
        every time zone, so the answer is cached per quarter hour (the task's `partition_of`
        on a one-row Series costs about a millisecond)."""
        days = []
        for moment in when:
            quarter = int(moment // 900)
            day = self._day_cache.get(quarter)
            if day is None:
                if len(self._day_cache) > 10_000:
                    self._day_cache.clear()
                day = self.partition_of(
                    pd.Series(pd.to_datetime([quarter * 900], unit="s", utc=True))
                )[0]
                self._day_cache[quarter] = day
            days.append(day)
        return days

    def _raise_if_unreachable(self) -> None:
        if self.probe is None:
            return
        try:
            self.probe()
        except Exception as exc:
            raise FeatureStoreUnavailable(str(exc)) from exc

    def _log(
        self, requests: list[dict], when, vector, results, latency_ms: float, rollout=None
    ) -> None:
        """Plain-Python records (the features as the model saw them, NaN stays NaN: json writes
        and reads it); serializing and writing happen on the log's own thread."""
        logged_at = time.time()
        rollout = rollout or [{}] * len(results)
        for day, request, features, result, scores in zip(
            self._days(when), requests, vector.records, results, rollout, strict=True
        ):
            self.log.append(
                day,
                {
                    "logged_at": logged_at,
                    "request": request,
                    "features": features,
                    **result,
                    "bento_model_tag": self.info.bento_model_tag,
                    "source": self.source,
                    "latency_ms": round(latency_ms, 3),
                    "batch_size": len(results),
                    **scores,  # in rollout: both models' scores and who answered
                },
            )


@dataclass(frozen=True)
class Challenger:
    """A model in rollout beside the champion. In `shadow` it scores every request and the
    champion answers; in `canary` the entities that `answers_with_challenger` assigns to it (by
    the request field `entity`, salted with its version) are answered by it. Both scores are
    logged either way."""

    model: object
    info: ModelInfo
    stage: str  # "shadow" | "canary"
    share: float = 0.0
    entity: str = ""

    def __post_init__(self) -> None:
        if self.stage not in ("shadow", "canary"):
            raise ValueError(f"a challenger serves in shadow or canary, not {self.stage!r}")
        if self.stage == "canary" and not self.entity:
            raise ValueError("a canary needs the request field that names the entity")
