"""Command line: replay a task's days into its landing folder, and materialize its graph.

flightline replay --start 2013-01-01 --end 2013-01-14   (--task flight_delay is the default)
flightline run    --start 2013-01-01 --end 2013-01-14   (replay, then materialize the task)
flightline rollback --task flight_delay                 (champion back to the version it replaced)
flightline push-events --start 2013-02-01 --end 2013-02-01 --until 17:00  (live events, online)
flightline tasks                                        (the tasks of the code location)
"""

import argparse
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg

from pipelines.platform.lib.settings import DataPaths

DEFAULT_START = "2013-01-01"
DEFAULT_END = "2013-01-31"
DEFAULT_TASK = "flight_delay"
# Dagster's own console logger prints every event; the progress logger prints one line per step.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "ERROR"}}, "progress": {}}}


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from exc


class ProgressPrinter(logging.Handler):
    """Turns Dagster's event stream into one line per step and per asset built or checked."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.started = time.perf_counter()
        self.reported: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is None:
            return
        elapsed = f"[{time.perf_counter() - self.started:6.1f}s]"
        kind = event.event_type_value
        if kind == "STEP_START":
            print(f"{elapsed} ... {event.step_key}", flush=True)
        elif kind == "STEP_FAILURE":
            error = event.step_failure_data.error
            print(
                f"{elapsed} FAILED {event.step_key}: {error.message.strip() if error else ''}",
                flush=True,
            )
        elif kind == "ASSET_MATERIALIZATION":
            mat = event.step_materialization_data.materialization
            key = mat.asset_key.to_user_string()
            if key in self.reported:  # a ranged run reports each of its days; one line is enough
                return
            self.reported.add(key)
            rows = _rows(mat.metadata)
            shown = f" {rows:,} rows" if rows is not None else ""
            print(f"{elapsed}  built {key}{shown}", flush=True)
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if not data.passed:
                print(
                    f"{elapsed}  CHECK FAILED {data.asset_key.to_user_string()}.{data.check_name}: {data.description}",
                    flush=True,
                )


def _rows(metadata) -> int | None:
    for name in ("dagster/row_count", "rows_in_run"):
        if name in metadata:
            return int(metadata[name].value)
    return None


def _progress_logger() -> dg.LoggerDefinition:
    @dg.logger
    def progress(_init_context):
        log = logging.getLogger("flightline.progress")
        log.handlers = [ProgressPrinter()]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        return log

    return progress


def materialize_window(
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    only: set[str] | None = None,
    run_config: dict | None = None,
    task: str | None = None,
    definitions: dg.Definitions | None = None,
    blocked: set[str] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize a task's graph over the days [start, end] in three runs: the unpartitioned
    assets upstream of the partitions (reference tables), every partitioned asset over the range
    as one run, then the unpartitioned assets downstream (models, evaluation, promotion). `task`:
    only that task's assets (default: every task); `only` narrows the selection to some asset
    names; `run_config` (ops: ...) reaches the assets it names. `definitions`: the code
    location's by default. `blocked`: partitions left out (files missing): the range runs as
    its contiguous runs around them, and one failing run does not stop the others."""
    from pipelines.definitions import defs

    definitions = definitions or defs()
    graph = definitions.resolve_asset_graph()
    keys = [
        k
        for k in graph.materializable_asset_keys
        if (only is None or k.to_user_string() in only or k.path[-1] in only)
        and (task is None or k.path[0] == task)
    ]
    partitioned = [graph.get(k).partitions_def for k in keys if graph.get(k).partitions_def]

    def after_days(key: dg.AssetKey) -> bool:
        parents = graph.get(key).parent_keys
        return any(graph.get(p).partitions_def is not None or after_days(p) for p in parents)

    unpartitioned = [k for k in keys if graph.get(k).partitions_def is None]
    ranges = _runnable_ranges(partitioned[0], start, end, blocked or set()) if partitioned else []
    phases = [
        ([k for k in unpartitioned if not after_days(k)], {}),
        *(
            ([k for k in keys if graph.get(k).partitions_def is not None], _range_tags(first, last))
            for first, last in ranges
        ),
        ([k for k in unpartitioned if after_days(k)], {}),
    ]
    results: list[dg.ExecuteInProcessResult] = []
    range_runs: list[bool] = []
    for index, (selected, tags) in enumerate(phases):
        last = index == len(phases) - 1
        if not selected or (last and range_runs and not any(range_runs)):
            continue  # no partition range succeeded: nothing new for the models
        result = _execute(definitions, selected, tags, run_config, instance)
        results.append(result)
        if tags:
            range_runs.append(result.success)  # a failed range does not stop the next one
        elif not result.success:
            break
    return results


def _execute(definitions, selected, tags, run_config, instance) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("make_run", selection=dg.AssetSelection.assets(*selected), tags=tags)
    job_def = dg.Definitions(
        assets=list(definitions.assets or []),
        asset_checks=list(definitions.asset_checks or []),
        jobs=[job],
        resources=definitions.resources,
        loggers={"progress": _progress_logger(), "console": dg.colored_console_logger},
    ).resolve_job_def("make_run")
    names = set(job_def.graph.node_dict)  # asset and check ops of this phase
    ops = {k: v for k, v in ((run_config or {}).get("ops") or {}).items() if k in names}
    return job_def.execute_in_process(
        instance=instance,
        raise_on_error=False,
        tags=tags,
        run_config={**QUIET_CONSOLE, "ops": ops} if ops else QUIET_CONSOLE,
    )


def _partitions_between(partitions_def, start: date, end: date) -> list[str]:
    """The partitions of the days [start, end] (days or hours)."""
    import pandas as pd

    zone = partitions_def.timezone
    return partitions_def.get_partition_keys_in_time_window(
        dg.TimeWindow(
            pd.Timestamp(start, tz=zone).to_pydatetime(),
            (pd.Timestamp(end, tz=zone) + pd.Timedelta(days=1)).to_pydatetime(),
        )
    )


def _runnable_ranges(
    partitions_def, start: date, end: date, blocked: set[str]
) -> list[tuple[str, str]]:
    """Contiguous runs of the window's partitions around the blocked ones."""
    ranges: list[tuple[str, str]] = []
    previous_ok = False
    for key in _partitions_between(partitions_def, start, end):
        if key in blocked:
            previous_ok = False
        elif previous_ok:
            ranges[-1] = (ranges[-1][0], key)
        else:
            ranges.append((key, key))
            previous_ok = True
    return ranges


def _range_tags(first: str, last: str) -> dict:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def blocked_partitions(task, landing_dir: Path, start: date, end: date) -> dict[str, str]:
    """Partitions of [start, end] that cannot run: a landing table's file is missing (or landed
    twice), by the same lookup ingestion uses; nothing is read or hashed."""
    from pipelines.platform.lib.landing import LandingError, find_day_file

    blocked = {}
    for key in _partitions_between(task.partitions_def, start, end):
        problems = []
        for table in task.definition.landing_tables:
            try:
                find_day_file(landing_dir, table.name, key)
            except LandingError:
                problems.append(table.name)
        if problems:
            blocked[key] = f"no {', '.join(problems)} file"
    return blocked


def _summary(
    results: list[dg.ExecuteInProcessResult],
    paths: DataPaths,
    started: float,
    task,
    blocked: dict[str, str] | None = None,
) -> str:
    lines = ["", "=" * 72, "Summary"]
    built: dict[str, int] = {}
    partitions: dict[str, set] = {}
    failed_checks, passed_checks = [], 0
    for result in results:
        for event in result.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                mat = event.step_materialization_data.materialization
                key = mat.asset_key.to_user_string()
                rows = _rows(mat.metadata)
                if rows is not None:
                    built[key] = rows
                else:
                    built.setdefault(key, -1)
                if mat.partition:
                    partitions.setdefault(key, set()).add(mat.partition)
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                if data.passed:
                    passed_checks += 1
                else:
                    failed_checks.append(f"{data.asset_key.to_user_string()}.{data.check_name}")
    for key in sorted(built):
        days = partitions.get(key)
        span = f"{min(days)}..{max(days)} ({len(days)} partitions)" if days else "unpartitioned"
        rows = f"{built[key]:>9,} rows" if built[key] >= 0 else " " * 14
        lines.append(f"  {key:<40}{rows}  {span}")
    lines.append(
        f"  checks: {passed_checks} passed, {len(failed_checks)} failed {failed_checks or ''}"
    )
    for key, why in (blocked or {}).items():
        lines.append(f"  blocked {key}: {why} (nothing downstream built for it)")
    ok = run_succeeded(results)
    lines += _champion_lines(results, [task.spec])
    lines += [
        f"  status: {'SUCCESS' if ok else 'FAILED (see the lines marked FAILED above)'} in {time.perf_counter() - started:.0f}s",
        f"  lake (Parquet):      {paths.lake}",
        f"  landing / archive:   {_landing(paths, task)} / {paths.archive}/{task.name}",
        f"  Feast registry:      {paths.feast_registry}",
        f"  Feast online store:  {_online_store(paths)}",
        "  open the UI:         make ui   (then http://127.0.0.1:3000)",
        "=" * 72,
    ]
    return "\n".join(lines)


GATE_SUFFIX = "_gate"


def _online_store(paths: DataPaths) -> str:
    from pipelines.platform.lib.services import mask

    return mask(paths.feast_redis_url) if paths.feast_redis_url else str(paths.feast_online_store)


def _quiet_mlflow() -> None:
    # MLflow logs every model it saves and draws download bars; the progress lines say enough.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def _load_task(name: str):
    from pipelines.platform.components.task import load_task

    return load_task(name)


def _landing(paths: DataPaths, task) -> Path:
    return paths.landing / task.name


def _push_events(task, start: date, end: date, until: str | None) -> int:
    from pipelines.platform.resources_config import embedded_resources

    if task.domain.push_events is None:
        print(f"task {task.name} has no live events to push", file=sys.stderr)
        return 2
    store = embedded_resources()["feast"].store()
    return task.domain.push_events(store, _landing(DataPaths.from_env(), task), start, end, until)


def _replay(task, paths: DataPaths, start: date, end: date) -> list:
    if task.domain.replay is None:
        raise ValueError(f"task {task.name} has no replay: land its files by other means")
    return task.domain.replay(_landing(paths, task), start, end)


def _paced_replay(task, paths: DataPaths, start: date, end: date, pace: float) -> int:
    from datetime import timedelta

    day = start
    while day <= end:
        landed = _replay(task, paths, day, day)
        print(f"landed {day}: {sum(f.rows for f in landed):,} rows", flush=True)
        day += timedelta(days=1)
        if day <= end:
            time.sleep(pace)
    return 0


def _rollback(task: str) -> int:
    from pipelines.platform.lib.tracking import PromotionRefused
    from pipelines.platform.resources_config import embedded_resources

    resources = embedded_resources()
    registry = resources["mlflow"].registry()
    try:
        registry.check_reachable()
        left, back_to = registry.rollback(task)
    except (PromotionRefused, RuntimeError) as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 1
    print(f"{task}: champion moved back from v{left} to v{back_to}")
    deployment = resources["deployment"]
    if not deployment.namespace:
        return 0
    # On a cluster the service follows: back to the revision that served that version.
    from pipelines.platform.lib.deployment import RolloutFailed

    target = deployment.target(task)
    try:
        rollout = target.roll_back_to_model(back_to, deployment.rollout_timeout_s)
    except RolloutFailed as exc:
        print(f"service not rolled back: {exc}", file=sys.stderr)
        return 1
    print(f"{task}: {target.where} serves {rollout.bento} again (revision {rollout.revision})")
    return 0


def _failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def run_succeeded(results: list[dg.ExecuteInProcessResult]) -> bool:
    """A promotion gate that refuses a challenger is a normal outcome, not a failed run."""
    return all(
        r.success or all(step.endswith(GATE_SUFFIX) for step in _failed_steps(r)) for r in results
    ) and bool(results)


def _champion_lines(results: list[dg.ExecuteInProcessResult], specs: list) -> list[str]:
    from pipelines.platform.resources_config import embedded_resources

    promoted = set()  # key prefixes of the tasks whose champion this run moved
    for r in results:
        for event in r.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                path = event.step_materialization_data.materialization.asset_key.path
                if path[-1] == "champion":
                    promoted.add(tuple(path[:-1]))
    refused = {
        event.event_specific_data.description
        for r in results
        for event in r.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
        and event.event_specific_data.check_name.endswith(GATE_SUFFIX)
        and not event.event_specific_data.passed
    }
    registry = embedded_resources()["mlflow"].registry()
    lines = []
    for spec in specs:
        try:
            current = registry.alias(spec.registered_model, "champion")
        except Exception as exc:
            lines.append(f"  champion ({spec.name}): registry unavailable: {exc}")
            continue
        if current is None:
            lines.append(f"  champion ({spec.name}): none yet")
            continue
        tags = current.tags
        this_run = tuple(spec.asset_prefix) in promoted
        lines.append(
            f"  champion ({spec.name}): {tags.get('model_family', '?')} v{current.version}, "
            f"holdout AUC {tags.get('holdout_roc_auc', '?')}, PR AUC {tags.get('holdout_pr_auc', '?')}, "
            f"log loss {tags.get('holdout_log_loss', '?')} -- "
            + ("promoted by this run" if this_run else "unchanged by this run")
        )
    lines += [f"  gate refused: {reason}" for reason in sorted(refused)]
    if specs:
        lines.append("  MLflow UI:           make mlflow   (then http://127.0.0.1:5000)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flightline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the tasks of the code location")
    for name, help_text in (
        ("replay", "drop a task's files of a range of days into its landing folder"),
        ("run", "replay, then materialize the task's graph over the range"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--task", default=DEFAULT_TASK)
        cmd.add_argument("--start", type=_parse_day, default=_parse_day(DEFAULT_START))
        cmd.add_argument("--end", type=_parse_day, default=_parse_day(DEFAULT_END))
    sub.choices["replay"].add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between days: land one day at a time, as the landing sensor would see them",
    )
    push = sub.add_parser(
        "push-events",
        help="push the departures and landings of landed days into the online store, in time order",
    )
    push.add_argument("--start", type=_parse_day, default=_parse_day(DEFAULT_START))
    push.add_argument("--end", type=_parse_day, default=_parse_day(DEFAULT_END))
    push.add_argument("--until", default=None, help="stop at this local time of --end (HH:MM)")
    push.add_argument("--task", default=DEFAULT_TASK)
    rollback = sub.add_parser(
        "rollback", help="point a task's @champion back at the version it replaced"
    )
    rollback.add_argument("--task", default=DEFAULT_TASK)
    args = parser.parse_args(argv)
    _quiet_mlflow()
    from pipelines.platform.components.definition import DefinitionError
    from pipelines.platform.components.task import task_definition_paths

    try:
        tasks = task_definition_paths()
    except DefinitionError as exc:
        print(f"flightline: {exc}", file=sys.stderr)
        return 2
    if args.command == "tasks":
        for name, path in tasks.items():
            print(f"{name}\t{path}")
        return 0
    if args.task not in tasks:
        print(f"unknown task {args.task!r}; tasks: {', '.join(tasks)}", file=sys.stderr)
        return 2
    if args.command != "replay":
        # Production profile: wrong credentials or a server that is down fail here, naming the
        # URL, not at the first query deep inside a step.
        from pipelines.platform.lib.services import ServiceUnavailable, check_services

        try:
            check_services()
        except ServiceUnavailable as exc:
            print(f"flightline: {exc}", file=sys.stderr)
            return 2
    if args.command == "rollback":
        return _rollback(args.task)
    task = _load_task(args.task)
    if args.command == "push-events":
        return _push_events(task, args.start, args.end, args.until)
    paths = DataPaths.from_env()
    started = time.perf_counter()
    try:
        if args.command == "replay" and args.pace > 0:
            return _paced_replay(task, paths, args.start, args.end, args.pace)
        landed = _replay(task, paths, args.start, args.end)
    except ValueError as exc:
        parser.error(str(exc))
    print(
        f"replayed {task.name} {args.start}..{args.end}: {len(landed)} files "
        f"({sum(f.rows for f in landed):,} rows) into {_landing(paths, task)}"
    )
    if args.command == "replay":
        return 0
    instance = dg.DagsterInstance.get()
    blocked = blocked_partitions(task, _landing(paths, task), args.start, args.end)
    for key, why in blocked.items():
        print(f"blocked {task.name} {key}: {why}; the other partitions run without it")
    results = materialize_window(
        args.start, args.end, instance, task=task.name, blocked=set(blocked)
    )
    print(_summary(results, paths, started, task, blocked))
    return 0 if run_succeeded(results) else 1


if __name__ == "__main__":
    sys.exit(main())
