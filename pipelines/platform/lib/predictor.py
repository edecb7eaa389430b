"""What the service does per request, without the HTTP layer: online features for the flights,
the pinned model's probabilities, the feature ages, and a record for the prediction log."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from feast import FeatureStore

from pipelines.platform.lib.online import feature_age_seconds, online_vector
from pipelines.platform.lib.prediction_log import PredictionLogWriter
from pipelines.platform.lib.task import TaskSpec
from pipelines.tasks.flight_delay.flights import PredictionTiming


class FeatureStoreUnavailable(RuntimeError):
    pass


class ModelUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str  # registered model (the task)
    version: str  # MLflow model version
    bento_model_tag: str  # the exact BentoML model tag the service was built with


class Predictor:
    def __init__(
        self,
        spec: TaskSpec,
        store: FeatureStore | None,
        model,
        info: ModelInfo,
        log: PredictionLogWriter | None = None,
        clock=None,
        probe: Callable[[], None] | None = None,
    ):
        self.spec = spec
        # Pings the online store's server (Redis): readiness asks it, and a failed lookup asks
        # it for a clearer reason ("online store unreachable: redis://...").
        self.probe = probe
        self.store = store
        self.model = model
        self.info = info
        self.log = log
        # The replayed clock: feature ages are measured against the flight's prediction time
        # unless a clock is given (a live deployment passes wall-clock time).
        self.clock = clock

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
        probe = pd.DataFrame(
            [
                {
                    "carrier": "UA",
                    "flight": 1,
                    "tailnum": None,
                    "origin": "EWR",
                    "dest": "IAH",
                    "sched_dep_ts": pd.Timestamp("2013-01-01T12:00", tz="UTC"),
                    "distance": 1400.0,
                }
            ]
        )
        log, self.log = self.log, None  # probes are not predictions
        try:
            for _ in range(rounds):
                self.predict(probe)
        finally:
            self.log = log

    def predict(self, flights: pd.DataFrame) -> list[dict]:
        started = time.perf_counter()
        if self.model is None:
            raise ModelUnavailable(f"model {self.info.bento_model_tag} is not loaded")
        if self.store is None:
            raise FeatureStoreUnavailable("no feature store configured")
        try:
            vector = online_vector(self.store, flights, self.spec)
        except Exception as exc:
            self._raise_if_unreachable()
            raise FeatureStoreUnavailable(
                f"online feature lookup failed: {type(exc).__name__}: {exc}"
            ) from exc
        probabilities = np.asarray(self.model.predict(vector.features), dtype="float64")
        sched = pd.to_datetime(flights["sched_dep_ts"], utc=True).reset_index(drop=True)
        # Ages at the moment of prediction (`lead` before departure on the replayed clock).
        now = self.clock() if self.clock else PredictionTiming().prediction_time(sched)
        ages = feature_age_seconds(vector, now)
        withheld = vector.withheld_views()
        results = [
            {
                "delay_probability": float(p),
                "model_name": self.info.name,
                "model_version": self.info.version,
                "feature_age_seconds": age,
                "unknown_tailnum": bool(unknown),
                # values from after the prediction time were withheld: not point-in-time
                "point_in_time": not views,
                "withheld_views": views,
            }
            for p, age, unknown, views in zip(
                probabilities, ages, vector.unknown_tailnum, withheld, strict=True
            )
        ]
        if self.log is not None:
            self._log(flights, sched, vector, results, (time.perf_counter() - started) * 1000)
        return results

    def _raise_if_unreachable(self) -> None:
        if self.probe is None:
            return
        try:
            self.probe()
        except Exception as exc:
            raise FeatureStoreUnavailable(str(exc)) from exc

    def _log(self, flights, sched, vector, results, latency_ms: float) -> None:
        """Plain-Python records from whole-batch conversions (a per-row pandas loop cost more
        than the prediction); serializing and writing happen on the log's own thread."""
        days = sched.dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d").tolist()
        requests = flights.reset_index(drop=True).to_dict(orient="records")
        names = list(vector.features.columns)
        rows = vector.features.to_numpy(dtype=object)  # NaN stays NaN: json writes and reads it
        logged_at = time.time()
        for day, request, row, result in zip(days, requests, rows, results, strict=True):
            self.log.append(
                day,
                {
                    "logged_at": logged_at,
                    "request": request,
                    "features": dict(zip(names, row, strict=True)),
                    **result,
                    "bento_model_tag": self.info.bento_model_tag,
                    "latency_ms": round(latency_ms, 3),
                    "batch_size": len(results),
                },
            )
