"""BentoML packaging: the champion imported from the MLflow registry into BentoML's model store
and a Bento built around the service with that exact model tag pinned."""

import json
import os
from contextlib import contextmanager
from pathlib import Path

from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.platform.lib.tracking import CHAMPION, ModelRegistry

SERVICE = "serving.service:FlightDelayService"
BENTO_NAME = "flight_delay_service"
MODEL_TAG_ENV = "FLIGHTLINE_BENTO_MODEL"


class PackagingError(RuntimeError):
    pass


def import_champion(registry: ModelRegistry, task: str):
    """The BentoML model holding the current champion; imported only if not there yet."""
    import bentoml

    champion = registry.alias(task, CHAMPION)
    if champion is None:
        raise PackagingError(
            f"{task} has no @{CHAMPION} in the MLflow registry; nothing to package"
        )
    version = str(champion.version)
    for model in _listed(bentoml.models.list, task):
        if model.info.labels.get("mlflow_version") == version:
            return model, False
    with registry.active():
        model = bentoml.mlflow.import_model(
            task,
            f"models:/{task}/{version}",
            labels={
                "task": task,
                "mlflow_version": version,
                "model_family": champion.tags.get("model_family", "?"),
            },
            metadata={
                "mlflow_run_id": champion.run_id,
                "holdout_roc_auc": champion.tags.get("holdout_roc_auc"),
            },
        )
    return model, True


def _listed(lister, name: str) -> list:
    from bentoml.exceptions import NotFound

    try:
        return list(lister(name))
    except NotFound:  # BentoML raises instead of returning an empty list
        return []


@contextmanager
def _model_tag_env(tag: str):
    previous = os.environ.get(MODEL_TAG_ENV)
    os.environ[MODEL_TAG_ENV] = tag
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MODEL_TAG_ENV, None)
        else:
            os.environ[MODEL_TAG_ENV] = previous


def latest_bento_for(model_tag: str):
    """A Bento already built around exactly this model, if any (rebuild only when it changes)."""
    import bentoml

    for bento in sorted(
        _listed(bentoml.list, BENTO_NAME), key=lambda b: b.info.creation_time, reverse=True
    ):
        if bento.info.labels.get("model_tag") == model_tag:
            return bento
    return None


def build_bento(model_tag: str, labels: dict[str, str]):
    import bentoml

    with _model_tag_env(model_tag):
        return bentoml.bentos.build(
            service=SERVICE,
            name=BENTO_NAME,
            labels={"model_tag": model_tag, **labels},
            include=[
                "serving/*.py",
                "pipelines/**/*.py",
                "feature_repo/*.py",
                "feature_repo/*.yaml",
                "pyproject.toml",
            ],
            # The data root (with BentoML's own store) may sit inside the project: never walk it.
            exclude=["data/", ".venv/", ".git/", "tests/", "benchmarks/", "**/__pycache__/"],
            args={"model_tag": model_tag},  # serving.service.BuildArgs: stored in bento.yaml
            # The bento runs in this project's locked environment (make serve); its image gets
            # the same lock from the Dockerfile, so BentoML need not resolve packages again.
            python={"requirements_txt": None, "packages": [], "lock_packages": False},
            build_ctx=str(PROJECT_ROOT),
        )


def bento_size_bytes(bento) -> int:
    root = Path(bento.path)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def write_latest(pointer: Path, bento, model) -> None:
    """What `make serve` starts: the Bento the packaging asset built last."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"bento": str(bento.tag), "model": str(model.tag)}))
