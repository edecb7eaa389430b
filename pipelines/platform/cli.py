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
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from pipelines.platform.console import quiet_console
from pipelines.platform.launch import ProgressPrinter, RunResult, materialized_rows, run_job
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.partitions import MAX_PARTITIONS_PER_RUN

DEFAULT_START = "2013-01-01"
DEFAULT_END = "2013-02-07"
DEFAULT_TASK = "flight_delay"
# The last days of `make run`'s window are monitored against the champion trained on the days
# before them: January trains it (as many days as the gate needs to judge slices), the first
# week of February is monitored (the rolling view of live performance has its 7 days).
DEFAULT_MONITOR_DAYS = 7
SOURCE_TAG = "flightline/source"  # who started a run: make-run here, the sensors their own
STAGE_TAG = "flightline/stage"
STARTED = time.perf_counter()  # the one clock of a command: progress lines and the summary


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from exc


def materialize_window(
    start: date,
    end: date,
    instance: dg.DagsterInstance,
    only: set[str] | None = None,
    run_config: dict | None = None,
    task: str | None = None,
    definitions: dg.Definitions | None = None,
    blocked: set[str] | None = None,
    *,
    monitor_from: date | None = None,
    tags: dict[str, str] | None = None,
    progress: ProgressPrinter | None = None,
    train: bool = True,
    before_monitored: Callable[[str, str], None] | None = None,
) -> list[RunResult]:
    """Materialize a task's graph over the days [start, end] with the code location's own jobs:
    `<task>_reference_data` (the unpartitioned assets upstream of the partitions), then
    `<task>_partitions` over the range as one run, then `<task>_retrain` (models, evaluation,
    promotion, Bento, drift reference). `monitor_from`: the days from it on come after the
    retrain, one run per day, as the landing sensor would run them: the champion trained on the
    days before serves and is monitored on them. `task`: only that task's assets (default:
    each task whose partitions meet the window, one after the other); `only` narrows the selection to some asset names; `run_config` (ops: ...)
    reaches the assets it names. `definitions`: the code location's by default (a set built in
    this process runs without the workspace's origin). `blocked`: partitions left out (files
    missing): the range runs as its contiguous runs around them, and one failing run does not
    stop the others. `train=False`: no models phase (a window too short to train on), and none
    of the partitioned assets that read what it builds. `before_monitored(task, day)`: called
    before each monitored day's run (`make run` serves the day's live traffic there)."""
    from pipelines.definitions import defs

    graph = (definitions or defs()).resolve_asset_graph()
    keys = [
        k
        for k in graph.materializable_asset_keys
        if (only is None or k.to_user_string() in only or k.path[-1] in only)
        and (task is None or k.path[0] == task)
    ]
    runner = _Runner(instance, run_config, definitions, tags or {}, progress or ProgressPrinter())
    results: list[RunResult] = []
    # Tasks differ in calendar and grain: without a task, each runs on its own, and one whose
    # partitions miss the window has nothing to do in it.
    names = sorted({k.path[0] for k in keys})
    if task is None:
        names = [n for n in names if _has_partitions_between(graph, n, start, end)]
    for name in names:
        mine = [k for k in keys if k.path[0] == name]
        results += _task_window(
            runner,
            name,
            mine,
            graph,
            start,
            end,
            blocked or set(),
            monitor_from,
            train,
            before_monitored,
        )
    return results


class _Runner:
    def __init__(self, instance, run_config, definitions, tags, progress) -> None:
        self.instance, self.run_config, self.definitions = instance, run_config, definitions
        self.tags, self.progress = tags, progress

    def __call__(self, job: str, keys, stage: str, tags=None, run_config=None) -> RunResult:
        return run_job(
            job,
            self.instance,
            keys,
            tags={**self.tags, STAGE_TAG: stage, **(tags or {})},
            run_config=_merge_ops(self.run_config, run_config),
            definitions=self.definitions,
            progress=self.progress,
        )


def _merge_ops(base: dict | None, extra: dict | None) -> dict:
    ops = {k: dict(v) for k, v in ((base or {}).get("ops") or {}).items()}
    for name, value in ((extra or {}).get("ops") or {}).items():
        merged = {**(ops.get(name, {}).get("config") or {}), **value["config"]}
        ops[name] = {"config": merged}
    return {"ops": ops} if ops else {}


def _task_window(
    runner,
    name,
    keys,
    graph,
    start,
    end,
    blocked,
    monitor_from,
    train=True,
    before_monitored=None,
) -> list[RunResult]:
    from pipelines.platform.components.automation import (
        partitions_job_name,
        reference_job_name,
        retrain_job_name,
    )

    def after_days(key: dg.AssetKey) -> bool:
        parents = graph.get(key).parent_keys
        return any(graph.get(p).partitions_def is not None or after_days(p) for p in parents)

    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    upstream = [k for k in keys if not graph.get(k).partitions_def and not after_days(k)]
    models = [k for k in keys if not graph.get(k).partitions_def and after_days(k)]
    # Partitioned assets that read what the models phase builds (drift report, live performance).
    monitored = {k for k in partitioned if graph.get_ancestor_asset_keys(k) & set(models)}
    if not train:
        partitioned = [k for k in partitioned if k not in monitored]
        models, monitor_from = [], None
    results: list[RunResult] = []
    if upstream:
        results.append(runner(reference_job_name(name), upstream, "reference"))
        if not results[-1].success:
            return results
    if not partitioned:
        return results + ([runner(retrain_job_name(name), models, "retrain")] if models else [])
    partitions_def = graph.get(partitioned[0]).partitions_def
    last_train = monitor_from - timedelta(days=1) if monitor_from else end
    train_keys = [k for k in partitioned if not monitor_from or k not in monitored]
    range_runs = [
        runner(partitions_job_name(name), train_keys, "partitions", _range_tags(first, last))
        for first, last in _runnable_ranges(partitions_def, start, last_train, blocked)
    ]
    results += range_runs
    if models and (any(r.success for r in range_runs) or not range_runs):
        until = None
        if monitor_from and range_runs:
            until = _retrain_until(name, _partitions_between(partitions_def, start, last_train))
        results.append(runner(retrain_job_name(name), models, "retrain", run_config=until))
    if monitor_from:
        for day in _partitions_between(partitions_def, monitor_from, end):
            if day not in blocked:  # one run per landed day, as the landing sensor runs them
                if before_monitored is not None:
                    before_monitored(name, day)
                tags = {"dagster/partition": day}
                results.append(runner(partitions_job_name(name), partitioned, "monitoring", tags))
    return results


def _retrain_until(name: str, days: list[str]) -> dict:
    """The models of the champion read the window's first part only: labelled up to its end."""
    from pipelines.platform.components.automation import retrain_run_config
    from pipelines.platform.components.task import load_task

    task = load_task(name)
    # cut when the last day ends: a label known later (a late landing) is not used yet
    return retrain_run_config(task.spec, days[-1], task.partition_end(days[-1]).isoformat())


def _has_partitions_between(graph, task: str, start: date, end: date) -> bool:
    """Whether the task's partitions (if it has any) meet the days [start, end]."""
    defs_ = {
        graph.get(k).partitions_def
        for k in graph.materializable_asset_keys
        if k.path[0] == task and graph.get(k).partitions_def is not None
    }
    return not defs_ or any(_partitions_between(d, start, end) for d in defs_)


def _partitions_between(partitions_def, start: date, end: date) -> list[str]:
    """The partitions of the days [start, end] (days or hours)."""
    import pandas as pd

    zone = partitions_def.timezone
    # Local midnights of calendar days: the day after `end` is a date, never end + 24 h (a
    # spring-forward day has 23 hours, a fall-back day 25).
    first = pd.Timestamp(start, tz=zone)
    after = pd.Timestamp(end + timedelta(days=1), tz=zone)
    # Dagster does not clip a window to the definition's own range: clip it here.
    first = max(first, pd.Timestamp(partitions_def.start))
    if partitions_def.end is not None:
        after = min(after, pd.Timestamp(partitions_def.end))
    if first >= after:
        return []
    return partitions_def.get_partition_keys_in_time_window(
        dg.TimeWindow(first.to_pydatetime(), after.to_pydatetime())
    )


def _runnable_ranges(
    partitions_def, start: date, end: date, blocked: set[str]
) -> list[tuple[str, str]]:
    """Contiguous runs of the window's partitions around the blocked ones, each of at most
    MAX_PARTITIONS_PER_RUN partitions (as the assets' backfill policy cuts a UI backfill)."""
    ranges: list[tuple[str, str]] = []
    length = 0
    for key in _partitions_between(partitions_def, start, end):
        if key in blocked:
            length = 0
        elif 0 < length < MAX_PARTITIONS_PER_RUN:
            ranges[-1] = (ranges[-1][0], key)
            length += 1
        else:
            ranges.append((key, key))
            length = 1
    return ranges


def _range_tags(first: str, last: str) -> dict:
    return {
        "dagster/asset_partition_range_start": first,
        "dagster/asset_partition_range_end": last,
    }


def blocked_partitions(task, landing_dir: Path | str, start: date, end: date) -> dict[str, str]:
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
    results: list[RunResult],
    paths: DataPaths,
    progress: ProgressPrinter,
    task,
    blocked: dict[str, str] | None = None,
    not_trained: str | None = None,
) -> str:
    lines = ["", "=" * 72, "Summary"]
    built: dict[str, int] = {}
    partitions: dict[str, set] = {}
    checks: dict[str, list[str]] = {}  # check -> the partitions (or "") where it failed
    for result in results:
        counted = set()  # a ranged run's row count is its whole range's, on each partition
        for event in result.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                mat = event.step_materialization_data.materialization
                key = mat.asset_key.to_user_string()
                rows = materialized_rows(mat.metadata)
                if key in counted:
                    pass
                elif rows is not None:
                    built[key] = max(built.get(key, 0), 0) + rows
                else:
                    built.setdefault(key, -1)
                counted.add(key)
                if mat.partition:
                    partitions.setdefault(key, set()).add(mat.partition)
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                name = f"{data.asset_key.to_user_string()}.{data.check_name}"
                failed = checks.setdefault(name, [])
                if not data.passed:
                    failed.append(data.partition or "")
    for key in sorted(built):
        days = partitions.get(key)
        span = f"{min(days)}..{max(days)} ({len(days)} partitions)" if days else "unpartitioned"
        rows = f"{built[key]:>9,} rows" if built[key] >= 0 else " " * 14
        lines.append(f"  {key:<40}{rows}  {span}")
    failed = {k: v for k, v in checks.items() if v}
    lines.append(
        f"  checks: {len(checks) - len(failed)} passed, {len(failed)} failed"
        + "".join(
            f"\n    {k} failed {', '.join(filter(None, v)) or ''}".rstrip()
            for k, v in failed.items()
        )
    )
    for key, why in (blocked or {}).items():
        lines.append(f"  blocked {key}: {why} (nothing downstream built for it)")
    ok = run_succeeded(results)
    jobs = sorted({r.job_name for r in results})
    lines += _champion_lines(results, [task.spec])
    if not_trained:
        lines.append(f"  no model trained: {not_trained}")
    lines += [
        f"  runs:                {len(results)} runs of {', '.join(jobs)}; in the UI: Runs, "
        f"tag {SOURCE_TAG}=make-run",
        f"  status: {'SUCCESS' if ok else 'FAILED (see the lines marked FAILED above)'} "
        f"in {progress.elapsed():.0f}s",
        f"  lake (Parquet):      {paths.lake}",
        f"  landing / archive:   {_landing(paths, task)} / {paths.archive}/{task.name}",
        f"  Feast registry:      {paths.feast_registry}",
        f"  Feast online store:  {_online_store(paths)}",
        f"  open the UI:         make ui   (then http://127.0.0.1:{os.environ.get('UI_PORT') or 3000}"
        "; README: what to open first)",
        "=" * 72,
    ]
    return "\n".join(lines)


GATE_SUFFIX = "_gate"


def _online_store(paths: DataPaths) -> str:
    from pipelines.platform.lib.services import mask

    return mask(paths.feast_redis_url) if paths.feast_redis_url else str(paths.feast_online_store)


def _quiet_mlflow() -> None:
    # MLflow logs every model it saves; the progress lines say enough.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    quiet_console()


def _load_task(name: str):
    from pipelines.platform.components.task import load_task

    return load_task(name)


def _landing(paths: DataPaths, task) -> Path | str:
    return paths.landing_for(task.name)


def _push_events(task, start: date, end: date, until: str | None) -> int:
    """Feed the online store through the task's live path with every fact known up to `until`
    (local HH:MM of --end; default: the end of --end): nothing stamped later is written, on any
    day of the range (issue 24)."""
    import pandas as pd

    from pipelines.platform.lib.landing import LandingError
    from pipelines.platform.lib.live import LivePathError, feed_from_env

    zone = task.definition.partitions.timezone
    begin = pd.Timestamp(start.isoformat(), tz=zone)
    stop = (
        pd.Timestamp(f"{end.isoformat()}T{until}", tz=zone)
        if until
        else pd.Timestamp((end + timedelta(days=1)).isoformat(), tz=zone)
    )
    if stop < begin:
        print(f"--until {until} is before --start {start}", file=sys.stderr)
        return 2
    feed = feed_from_env(task)
    try:
        feed.advance_to(begin)
        feed.advance_to(stop)
    except (LandingError, LivePathError) as exc:
        print(f"flightline: {exc}", file=sys.stderr)
        return 1
    written = ", ".join(f"{n:,} {view}" for view, n in sorted(feed.written.items()))
    print(f"{task.name}: fed up to {stop.tz_convert('UTC')}: {written or 'nothing'}")
    return 0


def _replay(task, paths: DataPaths, start: date, end: date) -> list:
    if task.domain.replay is None:
        raise ValueError(f"task {task.name} has no replay: land its files by other means")
    return task.domain.replay(_landing(paths, task), start, end)


def unlanded_days(task, landing_dir, start: date, end: date) -> list[date]:
    """Days of [start, end] with no landed file of any landing table: a landed file, perhaps a
    corrected one, is never replayed over (a day missing only some files is blocked, as before)."""
    from pipelines.platform.lib.landing import LandingError, find_day_file

    def landed(table: str, day: date) -> bool:
        try:
            find_day_file(landing_dir, table, day.isoformat())
        except LandingError:
            return False
        return True

    missing, day = [], start
    while day <= end:
        if not any(landed(t.name, day) for t in task.definition.landing_tables):
            missing.append(day)
        day += timedelta(days=1)
    return missing


def _replay_missing(task, paths: DataPaths, start: date, end: date) -> list:
    """`flightline run`'s replay: only the days that have no landed file yet."""
    landed = []
    for day in unlanded_days(task, _landing(paths, task), start, end):
        landed += _replay(task, paths, day, day)
    return landed


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


def _reproduce(task_name: str, version: str) -> int:
    """0: reproduced; 1: predictions differ beyond the family's tolerance; 2: refused."""
    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.reproduce import ReproductionRefused, reproduce
    from pipelines.platform.resources_config import embedded_resources

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    task = _load_task(task_name)
    registry = embedded_resources()["mlflow"].registry()
    try:
        registry.check_reachable()
        outcome = reproduce(task.spec, registry, Lake(DataPaths.from_env().lake), version)
    except ReproductionRefused as exc:
        print(f"reproduce refused: {exc}", file=sys.stderr)
        return 2
    print("\n".join(outcome.lines()))
    return 0 if outcome.identical else 1


def _failed_steps(result: RunResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def run_succeeded(results: list[RunResult]) -> bool:
    """A promotion gate that refuses a challenger is a normal outcome, not a failed run."""
    return all(
        r.success or all(step.endswith(GATE_SUFFIX) for step in _failed_steps(r)) for r in results
    ) and bool(results)


def _champion_lines(results: list[RunResult], specs: list) -> list[str]:
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
    lines += [f"  data: {line}" for line in _sufficiency_lines(results)]
    if specs:
        from pipelines.platform.resources_config import mlflow_ui_url

        lines.append(f"  MLflow UI:           make mlflow   (then {mlflow_ui_url()})")
    return lines


def _sufficiency_lines(results: list[RunResult]) -> list[str]:
    """The last evaluation's data sufficiency (lib/sufficiency.py), from its materialization."""
    from pipelines.platform.lib.sufficiency import summary_lines

    found = None
    for r in results:
        for event in r.all_events:
            if event.event_type_value != "ASSET_MATERIALIZATION":
                continue
            materialization = event.step_materialization_data.materialization
            if materialization.asset_key.path[-1] == "model_evaluation":
                value = materialization.metadata.get("data_sufficiency")
                found = value.value if value is not None else found
    return summary_lines(found) if found else []


def _new_task(root: Path, name: str, timezone: str) -> int:
    from pipelines.platform.scaffold import Scaffold, scaffold_task

    try:
        written = scaffold_task(root, Scaffold(name=name, timezone=timezone))
    except (ValueError, FileExistsError) as exc:
        print(f"flightline: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"  wrote {path.relative_to(root)}")
    print(
        f"task {name}: `make test-fast` and `nice pytest tests/tasks/{name}` pass as is; "
        f"`make run TASK={name}` runs it end to end on its example data. Then replace the "
        f"example domain in pipelines/tasks/{name}/ (docs/reference.md lists every field)."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flightline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the tasks of the code location")
    for name, help_text in (
        ("replay", "drop a task's files of a range of days into its landing folder"),
        ("run", "replay the days not landed yet, then materialize the task's graph over the range"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--task", default=DEFAULT_TASK)
        # Unset: the task definition's run_window, else DEFAULT_START..DEFAULT_END.
        cmd.add_argument("--start", type=_parse_day, default=None)
        cmd.add_argument("--end", type=_parse_day, default=None)
    sub.choices["run"].add_argument(
        "--monitor-days",
        type=int,
        default=DEFAULT_MONITOR_DAYS,
        help="the window's last days come after the champion (trained on the days before): "
        "served and monitored one day at a time; 0: every day trains",
    )
    sub.choices["run"].add_argument(
        "--live-requests",
        type=int,
        default=None,
        help="live requests served on each monitored day before its run (default: the task's "
        "drift_min_rows plus 10%%; 0: none, the monitoring judges the day's examples)",
    )
    sub.choices["run"].add_argument(
        "--no-replay",
        action="store_true",
        help="materialize what has landed; replay nothing (by default only days without a "
        "landed file are replayed: a corrected file is never overwritten)",
    )
    sub.choices["replay"].add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="seconds between days: land one day at a time, as the landing sensor would see them",
    )
    live = sub.add_parser(
        "live",
        help="weeks of live operation on a compressed clock: the daemon with the task's sensors "
        "and schedule on, a day landed every --pace seconds with live requests, then an audit",
    )
    live.add_argument("--days", type=int, default=21)
    live.add_argument("--pace", type=float, default=5.0, help="wall seconds per landed day")
    live.add_argument("--requests-per-day", type=int, default=250)
    live.add_argument("--task", default=DEFAULT_TASK)
    push = sub.add_parser(
        "push-events",
        help="feed the online store through each view's live path with every fact of the landed "
        "days known up to --until",
    )
    push.add_argument("--start", type=_parse_day, default=_parse_day(DEFAULT_START))
    push.add_argument("--end", type=_parse_day, default=_parse_day(DEFAULT_END))
    push.add_argument("--until", default=None, help="stop at this local time of --end (HH:MM)")
    push.add_argument("--task", default=DEFAULT_TASK)
    rollback = sub.add_parser(
        "rollback", help="point a task's @champion back at the version it replaced"
    )
    rollback.add_argument("--task", default=DEFAULT_TASK)
    reproduce = sub.add_parser(
        "reproduce",
        help="rebuild a registered model version from its record and compare holdout predictions",
    )
    reproduce.add_argument("--task", default=DEFAULT_TASK)
    reproduce.add_argument("--version", required=True, help="the registered model version")
    new_task = sub.add_parser(
        "new-task", help="write a task skeleton (domain, defs.yaml, data, a test) that runs as is"
    )
    new_task.add_argument("name")
    new_task.add_argument("--timezone", default="UTC", help="the task's partition days' zone")
    new_task.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args(argv)
    if args.command == "new-task":
        return _new_task(args.root, args.name, args.timezone)
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
    if args.command == "reproduce":
        return _reproduce(args.task, args.version)
    task = _load_task(args.task)
    if args.command == "run":
        from pipelines.platform.compat import silence_mlflow_event_lines

        silence_mlflow_event_lines()
    if args.command in ("replay", "run"):
        window = task.definition.run_window
        args.start = args.start or _parse_day(window.start if window else DEFAULT_START)
        args.end = args.end or _parse_day(window.end if window else DEFAULT_END)
    if args.command == "push-events":
        return _push_events(task, args.start, args.end, args.until)
    if args.command == "live":
        from pipelines.platform.live_operation import live as live_operation

        return live_operation(task, args.days, args.pace, args.requests_per_day)
    paths = DataPaths.from_env()
    progress = ProgressPrinter(STARTED)
    try:
        if args.command == "replay" and args.pace > 0:
            return _paced_replay(task, paths, args.start, args.end, args.pace)
        if args.command == "replay":
            landed = _replay(task, paths, args.start, args.end)
        elif args.no_replay:
            landed = []
        else:
            landed = _replay_missing(task, paths, args.start, args.end)
    except ValueError as exc:
        parser.error(str(exc))
    progress.line(
        f"replayed {task.name} {args.start}..{args.end}: {len(landed)} files "
        f"({sum(f.rows for f in landed):,} rows) into {_landing(paths, task)}"
    )
    if args.command == "replay":
        return 0
    instance = dg.DagsterInstance.get()
    blocked = blocked_partitions(task, _landing(paths, task), args.start, args.end)
    for key, why in blocked.items():
        progress.line(f"blocked {task.name} {key}: {why}; the other partitions run without it")
    monitor_from = monitored_from(task, args.start, args.end, args.monitor_days)
    if monitor_from:
        progress.line(
            f"plan: train on {args.start}..{monitor_from - timedelta(days=1)}, then run and "
            f"monitor {monitor_from}..{args.end} one day at a time"
        )
    elif args.monitor_days:
        progress.line(
            f"plan: {args.start}..{args.end} is too short to also monitor {args.monitor_days} "
            "days: every day trains the champion"
        )
    too_short = too_short_to_train(task, args.start, args.end)
    if too_short:
        progress.line(f"plan: {too_short}")
    traffic = _LiveTraffic(task, paths, progress, args.live_requests) if monitor_from else None
    try:
        results = materialize_window(
            args.start,
            args.end,
            instance,
            task=task.name,
            blocked=set(blocked),
            monitor_from=monitor_from,
            tags={SOURCE_TAG: "make-run"},
            progress=progress,
            train=not too_short,
            before_monitored=traffic,
        )
    finally:
        if traffic is not None:
            traffic.close()
    print(_summary(results, paths, progress, task, blocked, too_short), flush=True)
    return 0 if run_succeeded(results) else 1


class _LiveTraffic:
    """`make run`'s monitored days get live traffic: before a day's run, some of its examples
    are served at their prediction times through the service's Predictor and the task's live
    path (issue 24), so that its drift report, live performance and live skew check judge what
    was served. Enough for a drift verdict by default (the task's drift_min_rows, plus 10%)."""

    def __init__(self, task, paths: DataPaths, progress: ProgressPrinter, count: int | None):
        from pipelines.platform.live_operation import LiveTraffic

        minimum = task.definition.monitoring.drift_min_rows
        self.count = minimum + minimum // 10 if count is None else count
        self.traffic = LiveTraffic(task, paths, str(_landing(paths, task)))
        self.progress = progress

    def __call__(self, name: str, day: str) -> None:
        if self.count <= 0:
            return
        if not self.traffic.service.latest.exists():  # the retrain built no Bento: no service
            self.progress.line(f"{name} {day}: no Bento to serve with; no live traffic")
            return
        try:
            served = self.traffic.serve_day(day, self.count, seed=int(day[:10].replace("-", "")))
        except ValueError as exc:  # e.g. an hourly partition: not a day of examples
            self.progress.line(f"{name} {day}: no live traffic ({exc})")
            return
        self.progress.line(f"{name} {day}: {served} live requests served through the live path")

    def close(self) -> None:
        self.traffic.close()


def too_short_to_train(task, start: date, end: date) -> str | None:
    """Why the window [start, end] cannot train the task's models, or None. An outcome, not a
    fault: the days are still ingested, checked and turned into features."""
    split = task.spec.split
    days = (end - start).days + 1
    needed = split.validation_days + split.holdout_days + 1
    if days >= needed:
        return None
    return (
        f"{start}..{end} is {days} day{'s' * (days != 1)}, too short to train {task.name}: its "
        f"split needs at least {needed} ({split.validation_days} validation + "
        f"{split.holdout_days} holdout + 1 training); the days are ingested, checked and "
        f"turned into features, no model is trained (a window of {needed} days or more trains)"
    )


def monitored_from(task, start: date, end: date, monitor_days: int) -> date | None:
    """The first monitored day: the window's last `monitor_days`, if the days before them still
    hold the task's validation and holdout days and a week to train on (else none)."""
    split = task.spec.split
    train_days = (end - start).days + 1 - monitor_days
    if monitor_days <= 0 or train_days < split.validation_days + split.holdout_days + 7:
        return None
    return end - timedelta(days=monitor_days - 1)


if __name__ == "__main__":
    sys.exit(main())
