"""Where the platform keeps its files; every location can be moved by an environment variable."""

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.platform.lib.services import ProductionServices

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class DataPaths:
    """The embedded default keeps everything under one data root (default `<project>/data`).

    The production profile (FLIGHTLINE_POSTGRES_URL / FLIGHTLINE_REDIS_URL, see services.py) moves
    MLflow's backend store and Feast's registry to PostgreSQL and Feast's online store to Redis;
    files (lake, artifacts, Bentos) stay where the other variables say."""

    root: Path
    landing: Path
    lake: str  # a local path now; a pyarrow-understood URI (s3://, gs://) later
    feast_registry: Path | str  # a file, or a SQLAlchemy URL for Feast's SQL registry
    feast_online_store: Path  # the SQLite online store, unless feast_redis_url is set
    feast_redis_url: str | None
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    bentoml_home: Path
    prediction_log: Path

    @classmethod
    def from_env(cls) -> "DataPaths":
        root = Path(os.environ.get("FLIGHTLINE_DATA_ROOT", PROJECT_ROOT / "data")).resolve()
        services = ProductionServices.from_env()
        on_postgres = services.postgres_url is not None
        return cls(
            root=root,
            landing=Path(os.environ.get("FLIGHTLINE_LANDING_DIR", root / "landing")),
            lake=os.environ.get("FLIGHTLINE_LAKE_ROOT", str(root / "lake")),
            feast_registry=(
                services.feast_registry_url if on_postgres else root / "feast" / "registry.db"
            ),
            feast_online_store=root / "feast" / "online_store.db",
            feast_redis_url=services.redis_url,
            mlflow_tracking_uri=os.environ.get(
                "FLIGHTLINE_MLFLOW_TRACKING_URI",
                services.mlflow_tracking_uri
                if on_postgres
                else f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            ),
            mlflow_artifact_root=os.environ.get(
                "FLIGHTLINE_MLFLOW_ARTIFACT_ROOT", str(root / "mlflow" / "artifacts")
            ),
            # BentoML reads BENTOML_HOME once, when first imported: the Makefile exports it.
            bentoml_home=Path(os.environ.get("BENTOML_HOME", root / "bentoml")),
            prediction_log=Path(
                os.environ.get("FLIGHTLINE_PREDICTION_LOG", root / "prediction_log")
            ),
        )
