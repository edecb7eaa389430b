"""`make new-task`: the skeleton it writes loads as a task of the code location, is ruff-clean,
passes its own time-correctness tests before any domain code is written, replays its shipped
data, and its data folder is tracked by git (the root's `data/` rule does not swallow it). Run in
a copy of the sources: the project itself never gains a task here."""

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipelines.platform.scaffold import Scaffold, scaffold_task

ROOT = Path(__file__).resolve().parents[2]
NAME = "scaffold_probe"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("pipelines", "serving", "feature_repo"):
        shutil.copytree(ROOT / part, root / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").touch()
    (root / "tests" / "tasks").mkdir()
    (root / "tests" / "tasks" / "__init__.py").touch()
    scaffold_task(root, Scaffold(name=NAME, timezone="Asia/Shanghai"))
    return root


def _python(root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "FLIGHTLINE_DEFS_PATH": ""}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_skeleton_loads_as_a_task_beside_the_others(project):
    probe = (
        "from pipelines.platform.components.task import load_task, task_definition_paths\n"
        f"task = load_task('{NAME}')\n"
        "print(sorted(task_definition_paths()))\n"
        "print(task.spec.features, task.spec.timezone, task.spec.gate.min_slice_rows)\n"
    )
    result = _python(project, "-c", probe)
    assert result.returncode == 0, result.stderr[-3000:]
    tasks, spec = result.stdout.splitlines()[-2:]
    assert NAME in tasks and "flight_delay" in tasks and "wind_power" in tasks
    assert "('site', 'value', 'load', 'value_change_1h', 'hour_of_day')" in spec
    assert spec.endswith("Asia/Shanghai 50")


def test_the_skeleton_passes_its_own_tests_and_ruff(project):
    result = _python(project, "-m", "pytest", f"tests/tasks/{NAME}", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
    ruff = subprocess.run(
        [Path(sys.executable).with_name("ruff"), "check", "--no-cache", "pipelines", "tests"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout


def test_the_skeleton_replays_its_shipped_data(project, tmp_path):
    probe = (
        f"from pipelines.tasks.{NAME}.replay import replay_days\n"
        "from datetime import date\n"
        f"files = replay_days('{tmp_path}', date(2024, 1, 1), date(2024, 1, 3))\n"
        "print(len(files))\n"
    )
    result = _python(project, "-c", probe)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] in ("3", "4")  # Shanghai days of three UTC days
    landed = sorted(p.name for p in (tmp_path / "readings").glob("*.csv"))
    assert landed[0] == "2024-01-01.csv"


def test_a_tasks_data_folder_is_tracked_and_names_are_checked(project):
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"pipelines/tasks/{NAME}/data/readings.csv"], cwd=ROOT
    )
    assert ignored.returncode == 1  # not ignored
    assert (project / "pipelines" / "tasks" / NAME / "data" / "readings.csv").stat().st_size > 1000
    with pytest.raises(FileExistsError, match=NAME):
        scaffold_task(project, Scaffold(name=NAME))
    with pytest.raises(ValueError, match="lower case"):
        scaffold_task(project, Scaffold(name="Bad-Name", start=date(2024, 1, 1)))
