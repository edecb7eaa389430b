"""Weeks of live operation on a compressed clock, against a running `dagster-daemon`.

After a task's first champion exists (`make run`), the scenario lands one day of data every
`pace_s` seconds, as a real feed would: during each day it serves live requests at their
prediction times through the service's own Predictor (the online store fed with the day's events
up to each request), then lands the day's files; the daemon's landing sensor ingests them, the
drift sensor and the nightly schedule retrain when the evidence says so. A drift episode (the
task definition's `monitoring.drill`) disturbs a few days, a corrected file re-lands one day.
At the end `audit` reads back, from the instance, the lake, the prediction log and MLflow, what
left-running automation must never do, and `LiveReport.lines` prints it (`make live`,
tests/e2e/test_live_operation.py).
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from pipelines.platform.compat import check_evaluations, requested_backfills
from pipelines.platform.components.automation import UNFINISHED, _records, in_flight_days
from pipelines.platform.components.definition import Task
from pipelines.platform.lib.lake import PARTITION_COLUMN, Lake
from pipelines.platform.lib.landing import read_landed_day
from pipelines.platform.lib.live import LiveFeed, landed_reader, unavailable_views
from pipelines.platform.lib.monitoring import TRAINED_ON, latest_verdicts, rolling_view
from pipelines.platform.lib.retrain_policy import Thresholds, live_degraded
from pipelines.platform.lib.settings import PROJECT_ROOT, DataPaths


@dataclass
class ScenarioConfig:
    first_day: date  # the first live day (the day after the champion's window)
    days: int = 21
    requests_per_day: int = 250  # a drift verdict needs drift_min_rows (200) live rows a day
    pace_s: float = 5.0  # wall seconds between two landed days: "a day every few seconds"
    drift_from: int = 8  # offsets (0-based) of the drift episode's first and last day
    drift_to: int = 11
    # Offset of a day whose file is corrected (re-landed) two days later, once it was judged.
    corrected_day: int | None = 1
    settle_timeout_s: float = 3600
    seed: int = 0


@dataclass
class LiveReport:
    task: str
    days: list[str]
    counts: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"live operation of {self.task}: {self.days[0]}..{self.days[-1]}"]
        out += [f"  {k}: {v}" for k, v in self.counts.items()]
        out += [f"  PROBLEM: {p}" for p in self.problems] or ["  no problem found"]
        return out


class Daemon:
    """`dagster-daemon run` on the instance of DAGSTER_HOME, in its own process group."""

    def __init__(self, env: dict, log: Path, workspace: Path = PROJECT_ROOT / "workspace.yaml"):
        self.env, self.log, self.process, self.workspace = env, log, None, workspace

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        self.process = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-w", str(self.workspace)],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        import signal

        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def switch_on(
    task: str,
    env: dict,
    workspace: Path = PROJECT_ROOT / "workspace.yaml",
    commands: list[list[str]] | None = None,
) -> None:
    """The task's sensors and nightly schedule on (or `commands`), as a user does in the UI."""
    bin_dir = Path(sys.executable).parent
    workspace = str(workspace)
    commands = commands or [
        ["sensor", "start", f"{task}_landing_sensor"],
        ["sensor", "start", f"{task}_drift_sensor"],
        ["schedule", "start", f"{task}_nightly_retrain"],
    ]
    for command in commands:
        subprocess.run(
            [str(bin_dir / "dagster"), *command, "-w", workspace],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )


def _example_frame(task: Task, feed: str, day: str):
    """The day's examples (what the service is asked about during it), computed by the task's
    own examples function from the feed's files (the day and the window before it)."""
    import inspect

    import pandas as pd

    table = next(
        t for t in task.definition.feature_tables if t.name == task.definition.examples.table
    )
    frames = []
    for source in table.table_inputs():
        name = source.table.removeprefix("raw_")
        days = [
            (date.fromisoformat(day) - timedelta(days=back)).isoformat()
            for back in range(source.window or 0, -1, -1)
        ]
        parts = []
        for d in days:
            try:
                parts.append(read_landed_day(feed, name, d).frame.assign(**{PARTITION_COLUMN: d}))
            except Exception:  # the window before the first replayed day: not there
                continue
        frames.append(pd.concat(parts, ignore_index=True))
    fn = task.function(table)
    extra = (
        {"partition_keys": [day]} if "partition_keys" in inspect.signature(fn).parameters else {}
    )
    examples = fn(*frames, **extra)
    return examples[examples[PARTITION_COLUMN] == day] if PARTITION_COLUMN in examples else examples


def _requests(task: Task, feed: str, day: str, count: int, seed: int) -> list[dict]:
    """`count` of the day's examples as the service receives them (the task's request model,
    validated, as the row it hands the predictor), in the order of their prediction times."""
    import pandas as pd

    from pipelines.platform.components.definition import load_reference

    serving = task.definition.serving
    model = load_reference(serving.request_model, "serving.request_model")
    examples = _example_frame(task, feed, day)
    if examples.empty:
        return []
    stamp = task.spec.timestamp_column
    sample = examples.sample(min(count, len(examples)), random_state=seed).sort_values(stamp)
    rows = []
    for example in sample.to_dict(orient="records"):
        values = {
            name: example[name]
            for name in model.model_fields
            if name in example
            and not (isinstance(example[name], float) and example[name] != example[name])
        }
        values[serving.time_field or stamp] = pd.Timestamp(example[stamp]).to_pydatetime()
        try:
            rows.append(model.model_validate(values).to_row())
        except ValueError:  # the service would refuse it (a 400): not an answered request
            continue
    return rows


class LiveService:
    """The service's Predictor for the task's current Bento, reloaded when a new one is built;
    every answer logged with source `live`."""

    def __init__(self, task: Task, paths: DataPaths):
        self.task, self.paths = task, paths
        self.latest = paths.root / "serving" / task.name / "latest.json"
        self.bento, self.predictor = None, None
        self.answered: list[dict] = []
        self.store_clock = None  # the live feed's clock: `withheld_views` compares with it

    def _current(self):
        import bentoml

        from pipelines.platform.lib.prediction_log import PredictionLogWriter
        from pipelines.platform.lib.predictor import ModelInfo, Predictor
        from pipelines.platform.resources_config import embedded_resources

        latest = json.loads(self.latest.read_text())
        serving = (latest["model"], json.dumps(latest.get("challenger"), sort_keys=True))
        if serving != self.bento:
            if self.predictor is not None:
                self.predictor.log.close()
            stored = bentoml.models.get(latest["model"])
            self.predictor = Predictor(
                self.task.spec,
                self.task.domain,
                embedded_resources()["feast"].store(),
                bentoml.mlflow.load_model(stored),
                ModelInfo(
                    self.task.name,
                    stored.info.labels.get("mlflow_version", "?"),
                    str(stored.tag),
                ),
                log=PredictionLogWriter(self.paths.prediction_log_for(self.task.name)),
                score_field=self.task.definition.serving.score_field,
                flags=self.task.definition.serving.flags,
                partition_of=self.task.partition_of,
                source="live",
                unavailable=unavailable_views(self.task),
                store_clock=lambda: self.store_clock() if self.store_clock else None,
                challenger=self._challenger(latest.get("challenger")),
            )
            self.bento = serving
        return self.predictor

    def _challenger(self, rollout: dict | None):
        """The challenger the Bento carries in shadow or canary, as the service loads it."""
        import bentoml

        from pipelines.platform.lib.predictor import Challenger, ModelInfo

        if not rollout:
            return None
        stored = bentoml.models.get(rollout["model"])
        return Challenger(
            bentoml.mlflow.load_model(stored),
            ModelInfo(self.task.name, str(rollout["mlflow_version"]), str(stored.tag)),
            rollout["stage"],
            float(rollout["canary_share"]),
            self.task.definition.serving.canary_entity,
        )

    def answer(self, request: dict) -> dict:
        [result] = self._current().predict([request])
        self.answered.append({"request": request, "model_version": result["model_version"]})
        return result

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.log.close()


def _shift(task: Task, feed: str, day: str) -> None:
    """The drift drill of the task definition applied to the day's feed file."""
    import pandas as pd

    from pipelines.platform.lib.landing import find_day_file

    for drill in task.definition.monitoring.drill:
        path = Path(find_day_file(feed, drill.table, day))
        frame = pd.read_csv(path, keep_default_na=True, na_values=["NA"])
        column = pd.to_numeric(frame[drill.column], errors="coerce")
        frame[drill.column] = column * drill.multiply + drill.add
        frame.to_csv(path, index=False, na_rep="NA")


def _land(task: Task, feed: str, landing: str, day: str) -> None:
    """The day's files from the feed into the landing folder, each written atomically."""
    from pipelines.platform.lib.landing import find_day_file
    from pipelines.platform.lib.object_store import filesystem_for, under, write_bytes_atomic

    for table in task.definition.landing_tables:
        source = Path(find_day_file(feed, table.name, day))
        target = under(under(landing, table.name), source.name)
        fs, path = filesystem_for(str(target))
        fs.create_dir(str(Path(path).parent), recursive=True)
        write_bytes_atomic(fs, path, source.read_bytes())


def _push(live_feed, moment) -> None:
    """The live path (issue 24): every fact of the feed known up to the request's prediction
    time written to the online store, so it serves what the point-in-time join gives."""
    if live_feed.clock is None or moment > live_feed.clock:
        live_feed.advance_to(moment)


class LiveTraffic:
    """Live requests of a day served at their prediction times through the service's own
    Predictor, the online store fed by the task's live path up to each request's own prediction
    time (issue 24), every answer logged with source `live`. `feed`: the folder the day files
    are read from (the scenario's feed, which lands them afterwards; `make run`'s landing
    folder, where they already are: rows are written only once their stamp has passed)."""

    def __init__(self, task: Task, paths: DataPaths, feed: str):
        self.task, self.feed = task, feed
        self.service = LiveService(task, paths)
        self.live_feed = None  # the task's live path over the feed folder (lib/live.py)

    def serve_day(self, day: str, count: int, seed: int) -> int:
        """Serve `count` of the day's examples; returns how many were answered."""
        import pandas as pd

        requests = _requests(self.task, self.feed, day, count, seed)
        for request in requests:
            moment = pd.Timestamp(request[self.task.spec.timestamp_column])
            moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment
            # A request of the day can be predicted the evening before (wind power's first
            # two hours): the feed reaches its own prediction time all the same.
            at = self.task.spec.prediction_time(pd.Series([moment])).iloc[0]
            if self.live_feed is None:
                store = self.service._current().store
                self.live_feed = LiveFeed(self.task, store, landed_reader(self.feed))
                self.service.store_clock = self.live_feed.clock_seconds
            _push(self.live_feed, at)
            self.service.answer(request)
        return len(requests)

    def close(self) -> None:
        self.service.close()


def run_scenario(
    task: Task, paths: DataPaths, instance: dg.DagsterInstance, config: ScenarioConfig, say=print
) -> list[str]:
    """Land `config.days` days on the compressed clock with live traffic; returns the days."""
    import random

    feed = prepare_feed(task, paths, config.first_day)
    landing = str(paths.landing_for(task.name))
    traffic = LiveTraffic(task, paths, feed)
    rng = random.Random(config.seed)
    days = [(config.first_day + timedelta(days=i)).isoformat() for i in range(config.days)]
    try:
        for offset, day in enumerate(days):
            started = time.monotonic()
            replay_ahead(task, feed, day)
            drifting = config.drift_from <= offset <= config.drift_to
            if drifting:
                _shift(task, feed, day)
            served = traffic.serve_day(day, config.requests_per_day, rng.randrange(10**6))
            _land(task, feed, landing, day)
            say(
                f"{day}: {served} live requests answered, day landed"
                + (" (drift drill)" if drifting else "")
            )
            if config.corrected_day is not None and offset == config.corrected_day + 3:
                # A correction of a day already ingested (and judged): it must run once more.
                corrected = days[config.corrected_day]
                if _wait_judged(instance, task, corrected, min(600.0, config.settle_timeout_s)):
                    _correct(task, landing, corrected)
                    say(f"{corrected}: a corrected file re-landed")
                else:
                    say(f"{corrected}: never judged (its run failed?): no correction landed")
                    config.corrected_day = None
            time.sleep(max(0.0, config.pace_s - (time.monotonic() - started)))
    finally:
        traffic.close()
    _write_answered(paths, task, traffic.service.answered)  # what the audit compares the log with
    return days


def prepare_feed(task: Task, paths: DataPaths, first_day: date) -> str:
    """The live feed's folder, holding the first live day and the days the live path reads
    back (trailing statistics over 28 days), but none before the source's first day (a
    scenario may start a week into the data)."""
    feed = str(paths.root / "live_feed" / task.name)
    window = max(
        (i.window or 0 for t in task.definition.feature_tables for i in t.table_inputs()),
        default=0,
    )
    first_landed = task.partitions_def.start.date()
    back = max(first_day - timedelta(days=window), first_landed)
    if window and back < first_day:
        task.domain.replay(feed, back, first_day - timedelta(days=1))
    task.domain.replay(feed, first_day, first_day)
    return feed


def replay_ahead(task: Task, feed: str, day: str) -> None:
    """Before serving `day`: the feed holds tomorrow's file too. What is published a day ahead
    (a schedule, stamped the midnight before) is on the live path before its day starts; rows
    are written only once their stamp has passed, so tomorrow's events stay unseen."""
    _replay_ahead(task, feed, date.fromisoformat(day) + timedelta(days=1))


def land_day(task: Task, feed: str, paths: DataPaths, day: str) -> None:
    """The day's files from the feed into the task's landing folder (the landing sensor's)."""
    _land(task, feed, str(paths.landing_for(task.name)), day)


def _wait_judged(instance: dg.DagsterInstance, task: Task, day: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    key = task.key("live_performance")
    while day not in instance.get_materialized_partitions(key):
        if time.monotonic() > deadline:
            return False
        time.sleep(3)
    return True


def _replay_ahead(task: Task, feed: str, day: date) -> None:
    with contextlib.suppress(ValueError):  # past the source's last day: nothing published ahead
        task.domain.replay(feed, day, day)


def _correct(task: Task, landing: str, day: str) -> None:
    """The same rows in another order: a new file (a new hash) with the same facts."""
    import pandas as pd

    from pipelines.platform.lib.landing import find_day_file

    table = task.definition.landing_tables[0].name
    path = Path(find_day_file(landing, table, day))
    frame = pd.read_csv(path, keep_default_na=True, na_values=["NA"])
    tmp = path.with_suffix(".tmp-correct")
    frame.iloc[::-1].to_csv(tmp, index=False, na_rep="NA")
    tmp.replace(path)


def _write_answered(paths: DataPaths, task: Task, answered: list[dict]) -> None:
    out = paths.root / "live_feed" / f"{task.name}_answered.jsonl"
    with out.open("a") as handle:
        for entry in answered:
            handle.write(json.dumps(entry, default=str) + "\n")


def settle(instance: dg.DagsterInstance, task: Task, timeout_s: float, say=print) -> None:
    """Wait until nothing of the task is queued, running or being submitted, and the sensors
    have ticked twice since: automation has done what the landed days ask."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        busy = instance.get_runs(
            dg.RunsFilter(statuses=UNFINISHED, tags={"flightline/task": task.name})
        )
        pending = [
            b for b in requested_backfills(instance) if b.tags.get("flightline/task") == task.name
        ]
        if busy or pending or in_flight_days(instance, task):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif ticks_since(instance, f"{task.name}_landing_sensor", quiet_since) >= 2 and (
            ticks_since(instance, f"{task.name}_drift_sensor", quiet_since) >= 2
        ):
            return
        time.sleep(3)
    raise TimeoutError(f"{task.name}: automation still busy after {timeout_s:.0f} s")


def ticks_since(instance: dg.DagsterInstance, sensor: str, since: float) -> int:
    """Finished evaluations of the sensor that began after `since` (a timestamp)."""
    return sum(
        tick.status.value in ("SUCCESS", "SKIPPED")
        for state in instance.all_instigator_state()
        if state.instigator_name == sensor
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since)
    )


def _materialized(instance, key: dg.AssetKey) -> Counter:
    records = _records(
        instance, instance.fetch_materializations, dg.AssetRecordsFilter(asset_key=key)
    )
    return Counter(r.partition_key for r in records)


def audit(
    task: Task,
    paths: DataPaths,
    instance: dg.DagsterInstance,
    days: list[str],
    corrected: str | None,
    thresholds: Thresholds | None = None,
) -> LiveReport:
    """What must hold after weeks left running, read back from the instance, lake, log, MLflow."""
    import pandas as pd

    thresholds = thresholds or Thresholds()
    report = LiveReport(task.name, days)
    counts, problems = report.counts, report.problems
    lake = Lake(str(paths.lake))

    # Every landed day ingested exactly once (the corrected one once more), whoever launched it.
    for table in task.definition.landing_tables:
        seen = _materialized(instance, task.key(f"raw_{table.name}"))
        expected = {d: 2 if d == corrected else 1 for d in days}
        wrong = {d: seen.get(d, 0) for d in days if seen.get(d, 0) != expected[d]}
        counts[f"raw_{table.name} ingestions of live days"] = sum(seen[d] for d in days)
        if wrong:
            problems.append(f"raw_{table.name}: days ingested other than once: {wrong}")
        earlier = {d: n for d, n in seen.items() if d not in days and n != 1}
        if earlier:
            problems.append(f"raw_{table.name}: earlier days re-ingested: {earlier}")

    # No monitoring verdict lost: each live day has its verdicts, the corrected day two.
    for name in ("drift_report", "live_performance"):
        table = lake.read_partitions(task.table(name), days, allow_missing=True)
        per_day = Counter(table[PARTITION_COLUMN]) if len(table) else Counter()
        counts[f"{name} verdicts kept"] = sum(per_day.values())
        missing = [d for d in days if per_day.get(d, 0) == 0]
        if missing:
            problems.append(f"{name}: no verdict for {missing}")
        if corrected and per_day.get(corrected, 0) < 2:
            problems.append(f"{name}: the corrected day {corrected} lost its earlier verdict")
        materializations = _materialized(instance, task.key(name))
        if any(per_day.get(d, 0) < 1 for d in days if materializations.get(d)):
            problems.append(f"{name}: a materialized day holds no verdict")

    # Retrains: fair holdouts, no promotion that worsens log loss or ECE beyond the tolerance.
    retrains = instance.get_runs(dg.RunsFilter(tags={"flightline/task": task.name}))
    retrains = [r for r in retrains if r.job_name == f"{task.name}_retrain"]
    counts["retrains"] = dict(
        Counter(r.tags.get("flightline/trigger", "make run or the UI") for r in retrains)
    )
    if not any(r.tags.get("flightline/trigger") == "drift" for r in retrains):
        problems.append("no drift-triggered retrain")
    evaluations = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=task.key("model_evaluation")), limit=1000
    ).records
    unfair, promoted_worse = 0, 0
    for record in evaluations:
        meta = record.asset_materialization.metadata
        fairness = meta.get("fairness")
        if fairness is None:
            continue
        fair = fairness.value
        trained = [pd.Timestamp(t) for t in fair["train_ends"] if t]
        if any(t >= pd.Timestamp(fair["holdout_start"]) for t in trained):
            unfair += 1
            problems.append(f"evaluation in run {record.run_id[:8]}: holdout {fair}")
    for run in retrains:
        for check in _gate_results(instance, run.run_id):
            if not check.passed:
                continue
            values = {k: v.value for k, v in check.metadata.items()}
            for name in ("log_loss", "ece"):
                if values.get(f"{name}_increase_high", 0.0) > values.get(f"{name}_tolerance", 1.0):
                    promoted_worse += 1
                    problems.append(f"run {run.run_id[:8]} promoted with {name} beyond tolerance")
    counts["evaluations (unfair)"] = f"{len(evaluations)} ({unfair})"
    counts["promotions"] = sum(
        1 for r in retrains for c in _gate_results(instance, r.run_id) if c.passed
    )
    counts["promotions worsening log loss / ECE beyond tolerance"] = promoted_worse

    # One rule for degraded: every status equals what the trigger rule says of its numbers.
    live = lake.read_partitions(task.table("live_performance"), days, allow_missing=True)
    inconsistent = 0
    if len(live):
        for version, rows in latest_verdicts(live).groupby("champion_version"):
            history = latest_verdicts(
                lake.read_partitions(
                    task.table("live_performance"),
                    lake.partitions(task.table("live_performance")),
                    allow_missing=True,
                ),
                str(version),
            )
            view = rolling_view(history.assign(day=history[PARTITION_COLUMN]), "roc_auc")
            for row in rows.itertuples():
                if row.status not in ("ok", "degraded") or row.partition_date not in view.index:
                    continue
                rule = live_degraded(
                    float(view.loc[row.partition_date, "roc_auc_rolling_7d"]),
                    float(row.champion_holdout_roc_auc),
                    thresholds,
                )
                if (row.status == "degraded") != bool(rule):
                    inconsistent += 1
    statuses = Counter(latest_verdicts(live)["status"]) if len(live) else Counter()
    counts["live_performance statuses"] = dict(statuses)
    counts["statuses inconsistent with the trigger rule"] = inconsistent
    if inconsistent:
        problems.append(
            f"{inconsistent} live_performance status(es) disagree with the trigger rule"
        )
    drift = lake.read_partitions(task.table("drift_report"), days, allow_missing=True)
    counts["drift_report statuses"] = (
        dict(Counter(latest_verdicts(drift)["status"])) if len(drift) else {}
    )
    if len(drift) and (latest_verdicts(drift)["status"] == TRAINED_ON).all():
        problems.append("every live day judged as trained-on")

    # The live path served what training saw: each live day's live skew check, its last word.
    skew_key = dg.AssetCheckKey(task.key("prediction_log"), "prediction_log_live_skew")
    skew: dict[str, object] = {}
    for _, _, evaluation in check_evaluations(instance, skew_key, limit=10_000):
        if getattr(evaluation, "passed", None) is not None and evaluation.partition in days:
            skew[evaluation.partition] = evaluation
    compared = sum(int(e.metadata["requests_compared"].value) for e in skew.values())
    differing = sorted(d for d, e in skew.items() if not e.passed)
    counts["live skew checks: days / requests compared / days differing"] = (
        f"{len(skew)} / {compared} / {len(differing)}"
    )
    for day in differing:
        shares = skew[day].metadata["differing_share"].value
        problems.append(
            f"live skew on {day}: "
            + ", ".join(f"{c} {s:.1%}" for c, s in sorted(shares.items()) if s)
        )
    if len(skew) < len(days):
        problems.append(f"no live skew check of {sorted(set(days) - set(skew))}")

    # Every answered live request logged once, with source `live`.
    answered_path = paths.root / "live_feed" / f"{task.name}_answered.jsonl"
    answered = (
        [json.loads(line) for line in answered_path.read_text().splitlines()]
        if answered_path.exists()
        else []
    )
    logged = _logged_live(paths, task)
    keys = Counter(json.dumps(a["request"], sort_keys=True, default=str) for a in answered)
    logged_keys = Counter(json.dumps(r, sort_keys=True, default=str) for r in logged)
    counts["live requests answered"] = sum(keys.values())
    counts["live rows logged"] = sum(logged_keys.values())
    if keys != logged_keys:
        problems.append(
            f"{sum((keys - logged_keys).values())} answered not logged, "
            f"{sum((logged_keys - keys).values())} logged not answered"
        )
    return report


def _gate_results(instance: dg.DagsterInstance, run_id: str) -> list:
    return [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == "model_evaluation_gate"
    ]


def _logged_live(paths: DataPaths, task: Task) -> list[dict]:
    """The requests of every `live` row of the task's prediction log (the raw JSON lines)."""
    root = Path(paths.prediction_log_for(task.name))
    rows = []
    for path in sorted(root.glob("*/*.jsonl")) if root.exists() else []:
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line (the reader skips it too)
            if record.get("source") == "live":
                rows.append(record["request"])
    return rows


def live(task: Task, days: int, pace_s: float, requests_per_day: int, say=print) -> int:
    """`flightline live` / `make live`: the daemon started with the task's sensors and schedule
    on, `days` days landed on a compressed clock after the last one ingested, then the audit."""
    from pipelines.platform.components.automation import latest_ingested

    paths = DataPaths.from_env()
    instance = dg.DagsterInstance.get()
    last = latest_ingested(instance, task, "9999")
    if last is None or not Lake(str(paths.lake)).has_json(task.table("drift_reference")):
        say(f"no champion of {task.name} yet: run `make run TASK={task.name}` first")
        return 2
    first = date.fromisoformat(last[:10]) + timedelta(days=1)
    env = {
        **os.environ,
        "FLIGHTLINE_SENSOR_TICK_SECONDS": os.environ.get("FLIGHTLINE_SENSOR_TICK_SECONDS", "5"),
        # The compressed clock's "night": a retrain every few minutes of wall time.
        "FLIGHTLINE_RETRAIN_CRON": os.environ.get("FLIGHTLINE_RETRAIN_CRON", "*/5 * * * *"),
    }
    switch_on(task.name, env)
    daemon = Daemon(env, paths.root / "live_daemon.log")
    daemon.start()
    config = ScenarioConfig(
        first_day=first,
        days=days,
        pace_s=pace_s,
        requests_per_day=requests_per_day,
        drift_from=min(8, max(days - 6, 0)),
        drift_to=min(11, max(days - 3, 0)),
    )
    try:
        landed = run_scenario(task, paths, instance, config, say)
        say("waiting for automation to finish what the landed days ask ...")
        settle(instance, task, config.settle_timeout_s, say)
    finally:
        daemon.stop()
    corrected = landed[config.corrected_day] if config.corrected_day is not None else None
    report = audit(task, paths, instance, landed, corrected)
    for line in report.lines():
        say(line)
    return 1 if report.problems else 0
