"""The prediction-task component: a `defs.yaml` under `pipelines/defs/<task>/` whose attributes
are the task definition, built into the task's whole life (every asset under its key prefix)."""

import os
from pathlib import Path

import dagster as dg
import yaml
from pydantic import ValidationError

from pipelines.platform.components.alerts import task_alert_defs
from pipelines.platform.components.automation import automation_defs
from pipelines.platform.components.definition import (
    DefinitionError,
    Task,
    TaskDefinition,
    resolve,
    search_specs,
)
from pipelines.platform.components.features import features_defs
from pipelines.platform.components.ingestion import ingestion_defs
from pipelines.platform.components.live import live_skew_checks
from pipelines.platform.components.model import model_defs
from pipelines.platform.components.monitoring import monitoring_defs
from pipelines.platform.components.rollout import rollout_defs
from pipelines.platform.components.serving import serving_defs
from pipelines.platform.components.training import training_defs

DEFS_ROOT = Path(__file__).resolve().parents[2] / "defs"
DEFS_PATH_ENV = "FLIGHTLINE_DEFS_PATH"


class PredictionTask(dg.Component, TaskDefinition):
    """A binary prediction task: ingestion, validation, Feast features, training set, models,
    evaluation and gate, champion, Bento and service, monitoring and automation."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_task_defs(resolve(self))


def build_task_defs(task: Task) -> dg.Definitions:
    stages = dg.Definitions.merge(
        ingestion_defs(task),
        features_defs(task),
        training_defs(task),
        model_defs(
            task.spec,
            task.definition.models.params,
            search_specs(task.definition),
            task.definition.rollout.canary_share if task.definition.rollout.enabled else None,
        ),
        rollout_defs(task),
        serving_defs(task),
        monitoring_defs(task),
        dg.Definitions(asset_checks=[live_skew_checks(task)]),
    )
    assets = [a for a in stages.assets or [] if isinstance(a, dg.AssetsDefinition)]
    partitioned = [k for a in assets if a.partitions_def is not None for k in a.keys]
    # Unpartitioned assets that no partitioned asset precedes: reference tables, Feast apply.
    reference = (
        dg.AssetSelection.assets(*(k for a in assets if a.partitions_def is None for k in a.keys))
        - dg.AssetSelection.assets(*partitioned).downstream()
    )
    return dg.Definitions.merge(
        stages, automation_defs(task, partitioned, reference), task_alert_defs(task)
    )


def load_definition(path: str | Path) -> TaskDefinition:
    """A task's defs.yaml read on its own (the CLI and the service, outside a code location);
    a wrong field is an error naming the file and the field."""
    path = Path(path)
    document = yaml.safe_load(path.read_text()) or {}
    try:
        return TaskDefinition.model_validate(document.get("attributes") or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise DefinitionError(f"{path}: {problems}") from exc


def task_definition_paths() -> dict[str, Path]:
    """Every task by name: pipelines/defs/<task>/defs.yaml, and the defs.yaml files under the
    folders FLIGHTLINE_DEFS_PATH lists (os.pathsep-separated; tasks kept outside the project,
    such as the tests' own)."""
    roots = [
        DEFS_ROOT,
        *(Path(p) for p in os.environ.get(DEFS_PATH_ENV, "").split(os.pathsep) if p),
    ]
    out = {}
    for root in roots:
        for path in sorted(root.glob("**/defs.yaml")):
            out[load_definition(path).name] = path
    return out


def load_task(name: str, path: str | Path | None = None) -> Task:
    paths = task_definition_paths() if path is None else {name: Path(path)}
    if name not in paths:
        raise DefinitionError(f"no task {name!r}; tasks: {sorted(paths)}")
    return resolve(load_definition(paths[name]))
