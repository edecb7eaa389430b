"""Where the platform keeps its files; every location can be moved by an environment variable."""

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DataPaths:
    """The embedded default keeps everything under one data root (default `<project>/data`)."""

    root: Path
    landing: Path
    lake: str  # a local path now; a pyarrow-understood URI (s3://, gs://) later
    feast_registry: Path
    feast_online_store: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    bentoml_home: Path
    prediction_log: Path

    @classmethod
    def from_env(cls) -> "DataPaths":
        root = Path(os.environ.get("FLIGHTLINE_DATA_ROOT", PROJECT_ROOT / "data")).resolve()
        return cls(
            root=root,
            landing=Path(os.environ.get("FLIGHTLINE_LANDING_DIR", root / "landing")),
            lake=os.environ.get("FLIGHTLINE_LAKE_ROOT", str(root / "lake")),
            feast_registry=root / "feast" / "registry.db",
            feast_online_store=root / "feast" / "online_store.db",
            mlflow_tracking_uri=os.environ.get(
                "FLIGHTLINE_MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
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
