"""Cold start: importing the platform's modules (what every process that loads the code location
does, step pods included) must not import the heavy libraries. Each of those is imported where it
is used: Feast alone (through torch) costs 6-9 s here; see issue 18 and benchmarks/cold_start.py.

Each check runs in a fresh interpreter: this test process has long imported all of them."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipelines.platform
import pipelines.tasks
from benchmarks import cold_start

ROOT = Path(__file__).resolve().parents[2]
HEAVY = cold_start.HEAVY  # the libraries the benchmark also reports

# The modules that were made lazy for issue 18, and the platform modules the code location loads.
LAZY_MODULES = (
    "pipelines.platform.resources",
    "pipelines.platform.resources_config",
    "pipelines.platform.executors",
    "pipelines.platform.partitions",
    "pipelines.platform.cli",
    "pipelines.platform.lib.evaluation",
    "pipelines.platform.lib.plots",
    "pipelines.platform.lib.tracking",
    "pipelines.platform.lib.feature_store",
    "pipelines.platform.lib.online",
    "pipelines.platform.lib.skew",
    "pipelines.platform.lib.predictor",
    "pipelines.platform.lib.review",
    "pipelines.platform.lib.monitoring",
    "pipelines.platform.lib.retrain_policy",
    "pipelines.tasks",
    "pipelines.tasks.flight_delay.feast_declarations",
    "pipelines.tasks.flight_delay.domain",
    "pipelines.platform.components.task",
    "pipelines.platform.components.definition",
    "pipelines.tasks.flight_delay.live_events",
)

# Modules that exist to wrap one heavy library: importing them means using it.
WRAPPERS = {
    "pipelines.platform.lib.modeling.lgbm": "lightgbm",
    "pipelines.platform.lib.modeling.mlp": "torch",
    "pipelines.platform.lib.model_pyfunc": "mlflow (subclasses its PythonModel)",
}

_PROBE = """
import json, sys
for name in sys.argv[1:]:
    __import__(name)  # not importlib.import_module: -X importtime does not report those
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""


def _import_chain(importtime: str, library: str) -> list[str]:
    """From `python -X importtime` output: the chain of imports that first pulled `library`
    (children are printed before their parents, one indentation level deeper)."""
    rows = []
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.split("|")[2]
            rows.append((len(name) - len(name.lstrip()), name.strip()))
    for i, (depth, name) in enumerate(rows):
        if name == library:
            chain = [name]
            for parent_depth, parent in rows[i + 1 :]:
                if parent_depth < depth:
                    chain.append(parent)
                    depth = parent_depth
            return chain[::-1]
    return []


def _heavy_after_import(*modules: str) -> tuple[list[str], str]:
    probe = _PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _explain(found: list[str], importtime: str) -> str:
    return "; ".join(f"{lib}: {' <- '.join(_import_chain(importtime, lib)[::-1])}" for lib in found)


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_module_imports_no_heavy_library(module):
    found, importtime = _heavy_after_import(module)
    assert not found, f"importing {module} imports {found}: {_explain(found, importtime)}"


def _package_modules(package) -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    )


def test_every_platform_and_task_module_together():
    # One interpreter for all of them, so that a module added later is covered too.
    modules = [
        m
        for m in _package_modules(pipelines.platform) + _package_modules(pipelines.tasks)
        if m not in WRAPPERS
    ]
    assert set(LAZY_MODULES) - {"pipelines.tasks"} <= set(modules)
    found, importtime = _heavy_after_import(*modules)
    assert not found, _explain(found, importtime)


def test_loading_the_code_location_imports_no_heavy_library():
    """What every process pays: importing the definitions and building them (every task's
    component resolved from its defs.yaml) opens no store and imports no heavy library."""
    probe = (
        "import json, sys\n"
        "import pipelines.definitions as m\n"
        "m.defs()\n"
        f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert not found, _explain(found, done.stderr)


def test_import_chain_names_the_culprit():
    # The failure message is how a regression gets fixed: check it on a real import.
    found, importtime = _heavy_after_import("pipelines.platform.lib.modeling.lgbm")
    assert "lightgbm" in found
    assert _import_chain(importtime, "lightgbm")[:2] == [
        "pipelines.platform.lib.modeling.lgbm",
        "lightgbm",
    ]


def test_models_pickled_under_the_old_wrapper_path_still_load():
    # The pyfunc wrapper moved from tracking.py to model_pyfunc.py; models logged before were
    # pickled by reference to tracking.ClassifierPyfunc.
    import pickle

    from pipelines.platform.lib.model_pyfunc import ClassifierPyfunc

    old_reference = b"cpipelines.platform.lib.tracking\nClassifierPyfunc\n."
    assert pickle.loads(old_reference) is ClassifierPyfunc


def test_cold_start_benchmark_smoke(tmp_path):
    # A benchmark that stops working must fail here, not rot: one repeat, its figures parsed.
    # No time bound: targets are measured by the benchmark, not asserted by timed tests.
    out = tmp_path / "cold_start.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/cold_start.py", "--repeat", "1", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["seconds"]) == {
        "load",
        "load_floor",
        "validate",
        "validate_floor",
        "ui_first_page",
        "ui_loaded",
        "ui_floor_first_page",
        "ui_floor_loaded",
    }
    assert all(seconds > 0 for seconds in result["seconds"].values())
    assert result["ui_ratio"] > 0
    assert result["heavy_libraries_loaded"] == []
    assert "code location (import + defs())" in done.stdout
