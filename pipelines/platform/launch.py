"""Runs of the code location's own jobs started from the command line: the job the UI, the
sensors and the schedule launch (`<task>_partitions`, `<task>_retrain`, ...), with the
workspace's origin, so that the UI lists them under their job, on the Overview timeline, and can
re-execute them. They execute in this process (no run worker re-importing the world) and print
one line per step and one result line per check as they go."""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from pipelines.platform.compat import (
    code_location_job,
    execute_run_events,
    in_memory_job,
    workspace_job_origin,
)

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "workspace.yaml"
# Dagster's console logger prints every event; the progress printer prints what a person reads.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class RunResult:
    """What the tests and the summary read of a finished run (the events it produced)."""

    run_id: str
    job_name: str
    success: bool
    all_events: list = field(default_factory=list)

    def get_asset_materialization_events(self) -> list:
        """The run's materialization events (each with its `asset_key`), as Dagster's
        in-process result names them."""
        return [e for e in self.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]

    def asset_materializations_for_node(self, node_name: str) -> list[dg.AssetMaterialization]:
        return [
            e.step_materialization_data.materialization
            for e in self.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION" and e.node_name == node_name
        ]


def _code_location() -> dict:
    """The one code location of workspace.yaml: its name, module and attribute."""
    [entry] = yaml.safe_load(WORKSPACE.read_text())["load_from"]
    return entry["python_module"]


def step_labels(job_def: dg.JobDefinition) -> dict[str, str]:
    """What each step is, in the words of the asset graph: an asset key, or the checks of one."""
    labels = {}
    for assets_def in job_def.asset_layer.asset_graph.assets_defs:
        if not assets_def.is_executable:
            continue
        if assets_def.keys:
            label = ", ".join(sorted(k.to_user_string() for k in assets_def.keys))
        else:
            targets = sorted({k.asset_key.to_user_string() for k in assets_def.check_keys})
            label = f"checks of {', '.join(targets)}"
        labels[assets_def.node_def.name] = label
    return labels


class ProgressPrinter:
    """One clock for the whole command: every line carries the seconds since it started, and
    the summary's total is read from the same clock."""

    def __init__(self, started: float | None = None, echo=print) -> None:
        self.started = time.perf_counter() if started is None else started
        self.echo = echo

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def line(self, text: str) -> None:
        self.echo(f"[{self.elapsed():6.1f}s] {text}", flush=True)

    def watch(self, events: Iterable, labels: Mapping[str, str]) -> list:
        """Print the run's events as they come; return them all."""
        seen, reported, checks = [], set(), {}
        for event in events:
            seen.append(event)
            kind = event.event_type_value
            label = labels.get(event.step_key or "", event.step_key)
            if kind == "STEP_START":
                self.line(f"  ... {label}")
            elif kind == "STEP_FAILURE":
                self._check_lines(checks.pop(event.step_key, {}))
                self.line(f"  FAILED {label}: {_reason(event.step_failure_data.error)}")
            elif kind == "STEP_SKIPPED":
                self.line(f"  skipped {label} (an upstream step failed or a check blocked it)")
            elif kind == "STEP_SUCCESS":
                self._check_lines(checks.pop(event.step_key, {}))
            elif kind == "ASSET_MATERIALIZATION":
                mat = event.step_materialization_data.materialization
                key = mat.asset_key.to_user_string()
                if key in reported:  # a ranged run reports each of its partitions: one line
                    continue
                reported.add(key)
                rows = materialized_rows(mat.metadata)
                self.line(f"      built {key}{f' {rows:,} rows' if rows is not None else ''}")
            elif kind == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                checks.setdefault(event.step_key, {}).setdefault(data.check_name, []).append(data)
        return seen

    def _check_lines(self, by_check: dict) -> None:
        """One line per check: passed or failed, on how many partitions, and why (a check of
        one partition or none says what it found: the gate's verdict, the skew compared)."""
        for name, evaluations in by_check.items():
            failed = [e for e in evaluations if not e.passed]
            if len(evaluations) > 1:
                scope = f" ({len(evaluations) - len(failed)}/{len(evaluations)} partitions passed)"
            else:
                scope = f" ({evaluations[0].partition})" if evaluations[0].partition else ""
            days = ", ".join(e.partition for e in failed[:5] if e.partition)
            verdict = f"FAILED{f' on {days}' if days and len(evaluations) > 1 else ''}"
            said = (failed or evaluations)[0].description if failed or len(evaluations) == 1 else ""
            why = (said or "").strip().splitlines()
            self.line(
                f"      check {name}: {verdict if failed else 'passed'}{scope}"
                + (f": {why[0][:160]}" if why else "")
            )


def _reason(error) -> str:
    """The error's own first line (the user code's exception), not Dagster's wrapper and trace."""
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return ""
    return f"{error.cls_name}: " * bool(error.cls_name) + error.message.strip().splitlines()[0]


def materialized_rows(metadata) -> int | None:
    for name in ("dagster/row_count", "rows_in_run"):
        if name in metadata:
            return int(metadata[name].value)
    return None


def run_job(
    job_name: str,
    instance: dg.DagsterInstance,
    asset_keys: Iterable[dg.AssetKey],
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping | None = None,
    definitions: dg.Definitions | None = None,
    progress: ProgressPrinter | None = None,
) -> RunResult:
    """Run `job_name` of the code location over `asset_keys` (a subset of its assets, with
    their checks), in this process. `definitions`: a set built in this process instead of the
    code location's (tests that add a task); its runs carry no workspace origin."""
    keys = frozenset(asset_keys)
    if definitions is None:
        location = _code_location()
        job = code_location_job(location["module_name"], location["attribute"], str(ROOT), job_name)
        origin = workspace_job_origin(str(WORKSPACE), location["location_name"], job_name)
        job_code_origin = job.get_python_origin()
    else:
        job = in_memory_job(definitions.resolve_job_def(job_name))
        origin = job_code_origin = None
    job_def = job.get_definition()
    subset = job_def.get_subset(asset_selection=keys)
    ops = {
        name: config
        for name, config in ((run_config or {}).get("ops") or {}).items()
        if name in subset.graph.node_dict  # config for the steps of this run only
    }
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config={**QUIET_CONSOLE, **({"ops": ops} if ops else {})},
        tags={**job_def.run_tags, **(tags or {})},
        asset_selection=keys,
        remote_job_origin=origin,
        job_code_origin=job_code_origin,
    )
    progress = progress or ProgressPrinter()
    progress.line(f"{job_name} run {run.run_id[:8]}: {_describe(keys, tags or {})}")
    events = progress.watch(execute_run_events(job, run, instance), step_labels(subset))
    status = instance.get_run_by_id(run.run_id).status
    return RunResult(run.run_id, job_name, status == dg.DagsterRunStatus.SUCCESS, events)


def _describe(keys: frozenset, tags: Mapping[str, str]) -> str:
    first = tags.get("dagster/asset_partition_range_start") or tags.get("dagster/partition")
    last = tags.get("dagster/asset_partition_range_end") or first
    days = f" over {first}..{last}" if first and first != last else f" for {first}" if first else ""
    return f"{len(keys)} assets{days}"
