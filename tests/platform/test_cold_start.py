"""Cold start: importing the platform's modules (what every process that loads the code location
does, step pods included) must not import the heavy libraries. Each of those is imported where it
is used: Feast alone (through torch) costs 6-9 s here; see issue 18 and benchmarks/cold_start.py.
Nor the data libraries (pandas, numpy, pyarrow: ~1.3 s together, Dagster imports none of them):
without them the code location loads in under 3 s on 2 cores.

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
from pipelines.platform.components.task import DEFS_ROOT, load_definition

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
)

# Modules that exist to wrap one heavy library: importing them means using it.
WRAPPERS = {
    "pipelines.platform.lib.modeling.lgbm": "lightgbm",
    "pipelines.platform.lib.modeling.mlp": "torch",
    "pipelines.platform.lib.model_pyfunc": "mlflow (subclasses its PythonModel)",
}

DATA_LIBRARIES = cold_start.DATA
# The online path: imported by the service (numpy on every request), never by the code location.
SERVING_SIDE = ("pipelines.platform.lib.online", "pipelines.platform.lib.predictor")

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


# Records, for each data library, the stack (our frames) that imported it first: the import chain
# of -X importtime misses imports made through importlib, as task references are.
_DATA_PROBE = """
import json, os, sys, traceback
watched, first = set({libraries!r}), {{}}
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in watched and name not in first:
            first[name] = [
                f"{{os.path.relpath(f.filename)}}:{{f.lineno}}"
                for f in traceback.extract_stack()[:-1]
                if "/pipelines/" in f.filename
            ][-6:]
sys.meta_path.insert(0, Watch())
{body}
print(json.dumps({{name: first.get(name, "before the probe") for name in sorted(watched & set(sys.modules))}}))
"""


def _data_libraries_after(body: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _DATA_PROBE.format(libraries=DATA_LIBRARIES, body=body)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _culprits(found: dict[str, list[str]]) -> str:
    by_stack: dict[str, list[str]] = {}
    for lib, stack in found.items():
        by_stack.setdefault(" -> ".join(stack), []).append(lib)
    return "; ".join(f"{', '.join(libs)} imported by {stack}" for stack, libs in by_stack.items())


def test_every_platform_module_loads_without_data_libraries():
    modules = [
        m
        for m in _package_modules(pipelines.platform)
        if m not in WRAPPERS and m not in SERVING_SIDE
    ]
    found = _data_libraries_after("\n".join(f"import {m}" for m in modules))
    assert not found, _culprits(found)


def _task_packages() -> list[str]:
    return sorted(i.name for i in pkgutil.iter_modules(pipelines.tasks.__path__) if i.ispkg)


def _definitions_of(package: str) -> list[str]:
    """The task definitions under pipelines/defs whose domain lives in `package`."""
    names = []
    for path in sorted(DEFS_ROOT.glob("**/defs.yaml")):
        definition = load_definition(path)
        if definition.domain.startswith(f"pipelines.tasks.{package}."):
            names.append(definition.name)
    return names


@pytest.mark.parametrize("package", _task_packages())
def test_loading_a_task_imports_no_data_library(package):
    """Every task package: what loading its definition imports (the modules defs.yaml names for
    domain, contracts and feature functions, and everything they import at module level) must
    not import pandas, numpy or pyarrow at module level; they are imported inside functions."""
    names = _definitions_of(package)
    if not names:
        pytest.skip(
            f"no definition under pipelines/defs has its domain in pipelines.tasks.{package}"
        )
    found = _data_libraries_after(
        "import pipelines.definitions\n"
        "from pipelines.platform.components.task import build_task_defs, load_task\n"
        + "".join(f"build_task_defs(load_task({name!r}))\n" for name in names)
    )
    assert not found, f"{package}: {_culprits(found)}"


def test_loading_the_code_location_imports_no_data_library():
    found = _data_libraries_after("import pipelines.definitions as m\nm.defs()")
    assert not found, _culprits(found)


def test_asset_frames_keep_the_dagster_type_inferred_from_pandas():
    """frame_type.DataFrame is what Dagster makes of a `pd.DataFrame` annotation (the UI shows
    the same type), with pandas imported only to check a value."""
    import dagster as dg
    import pandas as pd
    from dagster._core.snap.dagster_types import build_dagster_type_snap
    from dagster._core.types.dagster_type import resolve_dagster_type

    from pipelines.platform.frame_type import DataFrame

    inferred = resolve_dagster_type(pd.DataFrame)
    assert build_dagster_type_snap(DataFrame) == build_dagster_type_snap(inferred)
    assert DataFrame.typing_type is pd.DataFrame
    assert dg.check_dagster_type(DataFrame, pd.DataFrame()).success
    mismatch = dg.check_dagster_type(DataFrame, {"a": 1})
    assert not mismatch.success
    assert mismatch.description == dg.check_dagster_type(pd.DataFrame, {"a": 1}).description


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


@pytest.mark.slow
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
    assert set(result["data_libraries_loaded"]) <= set(DATA_LIBRARIES)
    assert "code location (import + defs())" in done.stdout
