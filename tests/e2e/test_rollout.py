"""Staged rollout on live evidence, on a real `dagster-daemon` (issue 28): the landing sensor
ingests each live day, the rollout sensor asks the live gate again when its labels land, and the
rollout asset moves the challenger. Flight delay with its `rollout` block on
(tests/e2e/rollout_location.py).

- A first champion trained on shuffled labels (the offline gate's margin set to let it
  through), then a real retrain: the better challenger goes shadow -> canary -> champion.
- A retrain on shuffled labels again, through the same loose offline gate: the worse
  challenger is rolled back during shadow, with the live gate's reasons.
During shadow every live request is answered by the champion and both scores are logged; during
canary every request is answered by the model its aircraft's hash assigns."""

import os
import time
from datetime import date, timedelta

import dagster as dg
import pytest

from pipelines.platform.cli import materialize_window
from pipelines.platform.components.automation import retrain_selection
from pipelines.platform.components.rollout import rollout_job_name, rollout_sensor_name
from pipelines.platform.launch import run_job
from pipelines.platform.lib.prediction_log import read_day
from pipelines.platform.lib.rollout import answers_with_challenger
from pipelines.platform.lib.settings import PROJECT_ROOT, DataPaths
from pipelines.platform.live_operation import (
    Daemon,
    LiveTraffic,
    land_day,
    prepare_feed,
    replay_ahead,
    switch_on,
)
from pipelines.platform.resources_config import embedded_resources
from pipelines.platform.sqlite_event_log import embedded_profile_yaml
from tests.e2e.rollout_location import ROLLOUT, rollout_definitions, rollout_task
from tests.pipeline_fixture import MODEL_RUN_CONFIG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

TASK = "flight_delay"
START, END = date(2013, 1, 1), date(2013, 1, 9)
REQUESTS_PER_DAY = 400  # a stage needs 300 labelled rows, more while the evidence is inconclusive
SHUFFLED = {"label_permutation_seed": 11}
# An offline gate that lets a model without skill through (a non-inferiority margin of -1 AUC).
LOOSE_GATE = {
    "min_auc_gain": -1.0,
    "max_slice_regression": 1.0,
    "max_log_loss_increase": 10.0,
    "max_ece_increase": 1.0,
}
GATE_OP = "flight_delay__model_evaluation_model_evaluation_gate"


def _run_config(shuffled: bool) -> dict:
    ops = {
        k: {"config": {**v["config"], "until": END.isoformat()}}
        for k, v in MODEL_RUN_CONFIG["ops"].items()
    }
    if shuffled:
        for name in ("flight_delay__lgbm_model", "flight_delay__torch_model"):
            ops[name]["config"] |= SHUFFLED
        ops[GATE_OP] = {"config": LOOSE_GATE}
    return {"ops": ops}


def _rollouts(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dict]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=1000, ascending=True
    ).records
    return [
        {k: v.value for k, v in r.asset_materialization.metadata.items()} | {"run_id": r.run_id}
        for r in records
    ]


def _wait(condition, timeout_s: float, what: str, daemon_log) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            print(daemon_log.read_text()[-5000:])
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(3)


def _logged(paths: DataPaths, day: str):
    frame, _ = read_day(paths.prediction_log_for(TASK), day)
    return frame[frame["source"] == "live"] if len(frame) else frame


def test_a_better_challenger_is_promoted_and_a_worse_one_rolled_back_on_live_evidence(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(embedded_profile_yaml())
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: tests.e2e.rollout_location\n"
        "      attribute: defs\n      location_name: flightline\n"
        f"      working_directory: {PROJECT_ROOT}\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FLIGHTLINE_DATA_ROOT": str(tmp_path / "data"),
        "MLFLOW_LOGGING_LEVEL": "ERROR",
        "FLIGHTLINE_SENSOR_TICK_SECONDS": "5",
    }
    daemon_log = tmp_path / "daemon.log"
    with pytest.MonkeyPatch.context() as mp:
        for key in ("DAGSTER_HOME", "FLIGHTLINE_DATA_ROOT"):
            mp.setenv(key, env[key])
        paths = DataPaths.from_env()
        instance = dg.DagsterInstance.get()
        task = rollout_task()
        defs = rollout_definitions()
        registry = embedded_resources()["mlflow"].registry()
        # A first champion without skill (shuffled labels, let through by the loose gate).
        task.domain.replay(paths.landing_for(TASK), START, END)
        results = materialize_window(
            START, END, instance, task=TASK, run_config=_run_config(True), definitions=defs
        )
        assert all(r.success for r in results), [r.job_name for r in results if not r.success]
        weak = registry.champion_version(TASK)
        assert weak is not None

        retrain_keys = retrain_selection(task).resolve(defs.resolve_asset_graph())

        def retrain(shuffled: bool) -> str:
            result = run_job(
                f"{TASK}_retrain",
                instance,
                retrain_keys,
                run_config=_run_config(shuffled),
                definitions=defs,
            )
            assert result.success, result
            state = registry.rollout_state(TASK)
            assert state is not None and state.stage == "shadow", state
            return state.challenger_version

        # A real retrain: better offline, so it enters shadow beside the weak champion.
        better = retrain(False)
        assert registry.champion_version(TASK) == weak  # @champion has not moved
        switch_on(
            TASK,
            env,
            workspace,
            [
                ["sensor", "start", f"{TASK}_landing_sensor"],
                ["sensor", "start", rollout_sensor_name(task)],
            ],
        )
        daemon = Daemon(env, daemon_log, workspace)
        daemon.start()
        feed = prepare_feed(task, paths, date.fromordinal(END.toordinal() + 1))
        traffic = LiveTraffic(task, paths, feed)
        rollout_key = task.key("rollout")
        day = END
        stages: dict[str, list[str]] = {}
        decisions: dict[str, list[dict]] = {}  # the rollout's record after each day, by version

        def live_until_over(version: str, max_days: int) -> list[str]:
            """Serve and land days until the rollout of `version` ends; its stage after each."""
            nonlocal day
            seen = []
            for _ in range(max_days):
                day = day + timedelta(days=1)
                key = day.isoformat()
                replay_ahead(task, feed, key)
                served = traffic.serve_day(key, REQUESTS_PER_DAY, seed=day.toordinal())
                _wait(
                    lambda k=key, n=served: len(_logged(paths, k)) >= n,
                    120,
                    f"{served} logged requests of {key}",
                    daemon_log,
                )
                decided = len(_rollouts(instance, rollout_key))
                land_day(task, feed, paths, key)

                def decision_done(decided: int = decided) -> bool:
                    rows = _rollouts(instance, rollout_key)
                    if len(rows) <= decided:
                        return False
                    run = instance.get_run_by_id(rows[-1]["run_id"])
                    if run.status == dg.DagsterRunStatus.FAILURE:
                        raise AssertionError(f"rollout run {run.run_id} failed")
                    return run.status == dg.DagsterRunStatus.SUCCESS

                _wait(decision_done, 900, f"the rollout decision after {key}", daemon_log)
                record = _rollouts(instance, rollout_key)[-1]
                stage = record["stage"]
                print(f"{key}: {served} live requests, rollout of v{version}: {stage}")
                seen.append(stage)
                decisions.setdefault(version, []).append(record)
                if stage in ("champion", "rollback"):
                    return seen
            return seen

        try:
            stages["better"] = live_until_over(better, 7)
            assert registry.champion_version(TASK) == better
            worse = retrain(True)
            stages["worse"] = live_until_over(worse, 7)
        except Exception:
            print(daemon_log.read_text()[-5000:])
            raise
        finally:
            traffic.close()
            daemon.stop()

    # The better one: shadow, then canary, then champion, each on the live gate's verdict.
    assert stages["better"][-1] == "champion", stages
    assert "canary" in stages["better"], stages
    # Shadow lasted until the evidence sufficed (one day or several, as the live labels go): it
    # was left on the live gate's own verdict, with at least the labelled rows it asks for.
    [left_shadow] = [
        r for r in decisions[better] if r["previous_stage"] == "shadow" and r["stage"] != "shadow"
    ]
    assert left_shadow["stage"] == "canary" and left_shadow["live_gate"] == "advance", left_shadow
    assert left_shadow["labelled_rows"] >= ROLLOUT["min_labelled_rows"], left_shadow
    waited = [r for r in decisions[better] if r["stage"] == "shadow"]
    assert all(r["live_gate"] == "wait" for r in waited), waited
    # The worse one: rolled back during shadow, the champion unchanged, the reason recorded.
    assert stages["worse"][-1] == "rollback" and "canary" not in stages["worse"], stages
    assert registry.champion_version(TASK) == better
    final = [r for r in _rollouts(instance, rollout_key) if str(r.get("version")) == worse][-1]
    assert "rolled back during shadow" in final["decision"], final
    tags = registry.client.get_model_version(TASK, worse).tags
    assert tags["rollout_stage"] == "rollback" and tags["rollout_decision"] == final["decision"]
    assert registry.rollout_version(TASK) is None

    # What the service did in each stage, from the prediction log.
    import pandas as pd

    logged = pd.concat(
        [_logged(paths, (END + timedelta(days=i)).isoformat()) for i in range(1, 25)],
        ignore_index=True,
    )
    shadow = logged[logged["rollout_stage"] == "shadow"]
    canary = logged[logged["rollout_stage"] == "canary"]
    assert len(shadow) and shadow[["champion_score", "challenger_score"]].notna().all().all()
    assert (shadow["served_by"] == "champion").all()
    assert (shadow["model_version"].astype(str) == shadow["champion_version"].astype(str)).all()
    assigned = [
        answers_with_challenger(str(t), str(v), ROLLOUT["canary_share"])
        for t, v in zip(canary["request.tailnum"], canary["challenger_version"], strict=True)
    ]
    expected = pd.Series(["challenger" if a else "champion" for a in assigned], index=canary.index)
    assert len(canary) and (canary["served_by"] == expected).all()
    by_challenger = canary["served_by"] == "challenger"
    assert by_challenger.any() and (~by_challenger).any()
    assert (
        canary.loc[by_challenger, "model_version"].astype(str)
        == canary.loc[by_challenger, "challenger_version"].astype(str)
    ).all()
    # Each decision read a live A/B analysis: both models' metrics with intervals, a picture.
    analyses = [a for a in _rollouts(instance, task.key("live_ab_analysis")) if "comparison" in a]
    assert {str(a["version"]) for a in analyses} == {better, worse}
    assert all("live_ab_chart" in a and a["labelled_rows"] > 0 for a in analyses)
    runs = instance.get_runs(dg.RunsFilter(job_name=rollout_job_name(task)))
    print(
        f"better v{better}: {' -> '.join(stages['better'])}; worse v{worse}: "
        f"{' -> '.join(stages['worse'])}; {len(shadow)} shadow requests (all answered by the "
        f"champion, both scores logged), {len(canary)} canary requests "
        f"({int(by_challenger.sum())} answered by the challenger, each as its aircraft's hash "
        f"assigns); {len(runs)} rollout decisions launched by the sensor"
    )
