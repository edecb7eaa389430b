"""A Feast store of a test's own: registry and SQLite online store in a scratch folder, offline
sources in a scratch lake, with a task's definitions applied (what `feast_definitions` does)."""

from pathlib import Path

from pipelines.platform.lib.feature_store import FeastLocation, apply_definitions, open_store
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.settings import PROJECT_ROOT


def task_store(folder: Path, lake: Lake, task, project: str):
    store = open_store(
        FeastLocation(
            project,
            str(folder / "registry.db"),
            str(folder / "online.db"),
            lake.root,
            str(PROJECT_ROOT / "feature_repo"),
        )
    )
    apply_definitions(store, task.feast_objects(lake.root), task.name)
    return store
