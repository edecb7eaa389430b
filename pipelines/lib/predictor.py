"""What the service does per request, without the HTTP layer: online features for the flights,
the pinned model's probabilities, the feature ages, and a record for the prediction log."""

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from feast import FeatureStore

from pipelines.lib.online import feature_age_seconds, online_vector
from pipelines.lib.prediction_log import PredictionLogWriter
from pipelines.lib.task import TaskSpec


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
    ):
        self.spec = spec
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
            raise FeatureStoreUnavailable(
                f"online feature lookup failed: {type(exc).__name__}: {exc}"
            ) from exc
        probabilities = np.asarray(self.model.predict(vector.features), dtype="float64")
        now = self.clock() if self.clock else pd.to_datetime(flights["sched_dep_ts"], utc=True)
        ages = feature_age_seconds(vector, now)
        latency_ms = (time.perf_counter() - started) * 1000
        results = []
        for i, (_, flight) in enumerate(flights.reset_index(drop=True).iterrows()):
            result = {
                "delay_probability": float(probabilities[i]),
                "model_name": self.info.name,
                "model_version": self.info.version,
                "feature_age_seconds": ages[i],
                "unknown_tailnum": bool(vector.unknown_tailnum[i]),
            }
            results.append(result)
            if self.log is not None:
                day = (
                    pd.Timestamp(flight["sched_dep_ts"])
                    .tz_convert("America/New_York")
                    .strftime("%Y-%m-%d")
                )
                self.log.append(
                    day,
                    {
                        "logged_at": pd.Timestamp.now(tz="UTC").isoformat(),
                        "request": {
                            k: (v.isoformat() if isinstance(v, pd.Timestamp) else v)
                            for k, v in flight.items()
                        },
                        "features": {k: _plain(v) for k, v in vector.features.iloc[i].items()},
                        **result,
                        "bento_model_tag": self.info.bento_model_tag,
                        "latency_ms": round(latency_ms, 3),
                        "batch_size": len(flights),
                    },
                )
        return results


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
