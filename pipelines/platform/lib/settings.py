"""Where the platform keeps its files; every location can be moved by an environment variable."""

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.platform.lib.object_store import ObjectStore, under
from pipelines.platform.lib.services import ProductionServices

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class DataPaths:
    """The embedded default keeps everything under one data root (default `<project>/data`).

    The production profile (FLIGHTLINE_POSTGRES_URL / FLIGHTLINE_REDIS_URL, see services.py) moves
    MLflow's backend store and Feast's registry to PostgreSQL and Feast's online store to Redis;
    FLIGHTLINE_S3_ENDPOINT / FLIGHTLINE_S3_BUCKET (object_store.py) move the landing folder, the
    archive, the lake (and the reports beside it), the prediction log, MLflow's artifacts and
    exported Bentos into the bucket, so that pods share no disk. A variable naming one location still wins."""

    root: Path
    landing: Path | str  # a folder, or s3://<bucket>/landing on the object store
    lake: str  # a local folder, or s3://<bucket>/lake on the object store
    feast_registry: Path | str  # a file, or a SQLAlchemy URL for Feast's SQL registry
    feast_online_store: Path  # the SQLite online store, unless feast_redis_url is set
    feast_redis_url: str | None
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    bentoml_home: Path
    prediction_log: Path | str  # a folder, or s3://<bucket>/prediction_log
    bento_exports: Path | str  # where the bento asset exports Bentos for the cluster
    archive: Path | str  # every version of every landed file, by content hash
    object_store: ObjectStore | None = None

    def landing_for(self, task: str) -> Path | str:
        """Each task's replay drops its files under a folder (a prefix) of its own."""
        return under(self.landing, task)

    def prediction_log_for(self, task: str) -> Path | str:
        """Each task's service logs under a folder (a prefix) of its own."""
        return under(self.prediction_log, task)

    @classmethod
    def from_env(cls) -> "DataPaths":
        root = Path(os.environ.get("FLIGHTLINE_DATA_ROOT", PROJECT_ROOT / "data")).resolve()
        services = ProductionServices.from_env()
        on_postgres = services.postgres_url is not None
        store = ObjectStore.from_env()

        def files(name: str) -> Path | str:
            return store.uri(name) if store else root / name

        return cls(
            root=root,
            landing=_location(os.environ.get("FLIGHTLINE_LANDING_DIR") or files("landing")),
            lake=os.environ.get("FLIGHTLINE_LAKE_ROOT", str(files("lake"))),
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
                "FLIGHTLINE_MLFLOW_ARTIFACT_ROOT",
                store.uri("mlflow") if store else str(root / "mlflow" / "artifacts"),
            ),
            # BentoML reads BENTOML_HOME once, when first imported: the Makefile exports it.
            bentoml_home=Path(os.environ.get("BENTOML_HOME", root / "bentoml")),
            prediction_log=_location(
                os.environ.get("FLIGHTLINE_PREDICTION_LOG") or files("prediction_log")
            ),
            bento_exports=files("bentos"),
            archive=files("archive"),
            object_store=store,
        )


def _location(value: str | Path) -> Path | str:
    return value if isinstance(value, Path) or "://" in value else Path(value)
