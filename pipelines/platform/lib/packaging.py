"""BentoML packaging: the champion imported from the MLflow registry into BentoML's model store
and a Bento built around the service with that exact model tag pinned."""

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.platform.lib.tracking import CHAMPION, ModelRegistry

SERVICE = "serving.service:PredictionService"  # one generic service, built per task
MODEL_TAG_ENV = "FLIGHTLINE_BENTO_MODEL"
TASK_ENV = "FLIGHTLINE_TASK"


def bento_name(task: str) -> str:
    return f"{task}_service"


class PackagingError(RuntimeError):
    pass


CHALLENGER_TAG_ENV = "FLIGHTLINE_CHALLENGER_MODEL"
ROLLOUT_STAGE_ENV = "FLIGHTLINE_ROLLOUT_STAGE"
CANARY_SHARE_ENV = "FLIGHTLINE_CANARY_SHARE"


def import_champion(registry: ModelRegistry, task: str):
    """The BentoML model holding the current champion; imported only if not there yet."""
    champion = registry.alias(task, CHAMPION)
    if champion is None:
        raise PackagingError(
            f"{task} has no @{CHAMPION} in the MLflow registry; nothing to package"
        )
    return import_version(registry, task, champion)


def import_rollout(registry: ModelRegistry, task: str) -> dict | None:
    """The challenger in shadow or canary, imported beside the champion: its BentoML model tag,
    stage and canary share (what the service is built with), or None."""
    state = registry.rollout_state(task)
    if state is None:
        return None
    model, _ = import_version(
        registry, task, registry.client.get_model_version(task, state.challenger_version)
    )
    return {
        "model": str(model.tag),
        "mlflow_version": state.challenger_version,
        "stage": state.stage,
        "canary_share": state.canary_share,
    }


def import_version(registry: ModelRegistry, task: str, champion):
    """The BentoML model holding a registered version; imported only if not there yet."""
    import bentoml

    version = str(champion.version)
    for model in _listed(bentoml.models.list, task):
        # A version number names a model only within one registry: a BentoML store shared by
        # two (two data roots, the test suite) holds several "v3". The run id is unique.
        if (
            model.info.labels.get("mlflow_version") == version
            and model.info.metadata.get("mlflow_run_id") == champion.run_id
        ):
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
            # BentoML refuses None: a version never evaluated has no holdout tag.
            metadata={"mlflow_run_id": champion.run_id}
            | (
                {"holdout_roc_auc": champion.tags["holdout_roc_auc"]}
                if "holdout_roc_auc" in champion.tags
                else {}
            ),
        )
    return model, True


def _listed(lister, name: str) -> list:
    from bentoml.exceptions import NotFound

    try:
        return list(lister(name))
    except NotFound:  # BentoML raises instead of returning an empty list
        return []


@contextmanager
def _service_env(**values: str):
    """The service module reads its task and model tag at import, which the build does.

    BentoML imports the service only if it is not in `sys.modules` yet: a second build in one
    process would reuse the first build's module (its models) under the new build's labels. The
    build gets a fresh import; the module others imported before is put back afterwards."""
    module_name = SERVICE.split(":", 1)[0]
    package, _, leaf = module_name.rpartition(".")
    imported = sys.modules.pop(module_name, None)
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.modules.pop(module_name, None)
        parent = sys.modules.get(package)
        if imported is not None:
            sys.modules[module_name] = imported
            if parent is not None:
                setattr(parent, leaf, imported)
        elif parent is not None and hasattr(parent, leaf):
            delattr(parent, leaf)  # `from serving import service` would find the build's copy


def rollout_label(rollout: dict | None) -> str:
    """What a Bento serves beside its champion: "" or `<model tag>@<stage>@<share>`."""
    if not rollout:
        return ""
    return f"{rollout['model']}@{rollout['stage']}@{rollout['canary_share']}"


def latest_bento_for(task: str, model_tag: str, rollout: dict | None = None):
    """A Bento already built around exactly this model (and this challenger in this stage), if
    any: rebuild only when one of them changes."""
    import bentoml

    for bento in sorted(
        _listed(bentoml.list, bento_name(task)), key=lambda b: b.info.creation_time, reverse=True
    ):
        labels = bento.info.labels
        if labels.get("model_tag") == model_tag and labels.get("rollout", "") == rollout_label(
            rollout
        ):
            return bento
    return None


def build_bento(task: str, model_tag: str, labels: dict[str, str], rollout: dict | None = None):
    """`rollout`: a challenger the Bento carries beside the champion (import_rollout), its
    model declared by the service and its stage stored in the Bento's build arguments."""
    import bentoml

    challenger = {
        "challenger_tag": rollout["model"] if rollout else "",
        "rollout_stage": rollout["stage"] if rollout else "",
        "canary_share": str(rollout["canary_share"]) if rollout else "",
    }
    env = {
        MODEL_TAG_ENV: model_tag,
        TASK_ENV: task,
        CHALLENGER_TAG_ENV: challenger["challenger_tag"],
        ROLLOUT_STAGE_ENV: challenger["rollout_stage"],
        CANARY_SHARE_ENV: challenger["canary_share"],
    }
    if rollout:
        labels = {**labels, "rollout": rollout_label(rollout)}
    with _service_env(**env):
        return bentoml.bentos.build(
            service=SERVICE,
            name=bento_name(task),
            labels={"model_tag": model_tag, **labels},
            include=[
                "serving/*.py",
                "pipelines/**/*.py",
                "pipelines/defs/**/*.yaml",
                "feature_repo/*.yaml",
                "pyproject.toml",
            ],
            # The data root (with BentoML's own store) may sit inside the project: never walk it.
            exclude=["data/", ".venv/", ".git/", "tests/", "benchmarks/", "**/__pycache__/"],
            # serving.service.BuildArgs: stored in bento.yaml
            args={"model_tag": model_tag, "task": task, **challenger},
            # The bento runs in this project's locked environment (make serve); its image gets
            # the same lock from the Dockerfile, so BentoML need not resolve packages again.
            python={"requirements_txt": None, "packages": [], "lock_packages": False},
            build_ctx=str(PROJECT_ROOT),
        )


def bento_size_bytes(bento) -> int:
    root = Path(bento.path)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def write_latest(pointer: Path, bento, model, rollout: dict | None = None) -> None:
    """What `make serve TASK=...` starts: the Bento the task's packaging asset built last (and
    the challenger it carries, for a process that serves without HTTP)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    latest = {"bento": str(bento.tag), "model": str(model.tag)}
    pointer.write_text(json.dumps(latest | ({"challenger": rollout} if rollout else {})))


def export_name(bento) -> str:
    return f"{bento.tag.name}/{bento.tag.version}.bento"


def export_bento(bento, root: str | Path) -> str:
    """The built Bento (service code, pinned model) as one file under `root`: a folder or the
    object store, where a pod that does not share this one's disk imports it. Written under a
    temporary name and renamed: an export is whole or absent. Returns its location."""
    import tempfile

    import bentoml

    from pipelines.platform.lib.object_store import upload_file

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "bento.bento"
        bentoml.export_bento(bento.tag, str(local))
        return upload_file(str(root), export_name(bento), local)


def import_exported(uri: str, tag: str):
    """The Bento `tag` in this process's store, imported from its export if not there yet."""
    import tempfile

    import bentoml
    from bentoml.exceptions import NotFound

    from pipelines.platform.lib.object_store import download_file

    try:
        return bentoml.get(tag)
    except NotFound:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        local = download_file(uri, Path(tmp) / "bento.bento")
        bento = bentoml.import_bento(str(local))
    if str(bento.tag) != tag:
        raise PackagingError(f"{uri} holds Bento {bento.tag}, not {tag}")
    return bento
