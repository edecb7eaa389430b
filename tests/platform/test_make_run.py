"""`make run`'s order over a window: reference data, the first days' partitions, the champion
trained on them, then each remaining day on its own run, monitored against that champion. The
runs are the code location's jobs; here a recorder stands in for executing them (the e2e
fixture and `make run` execute the same jobs)."""

from datetime import date

import pytest

from pipelines.definitions import defs
from pipelines.platform.cli import _task_window, monitored_from
from pipelines.platform.components.task import load_task
from pipelines.platform.launch import RunResult

TASK = "flight_delay"


@pytest.fixture(scope="module")
def graph():
    return defs().resolve_asset_graph()


def _plan(graph, start, end, monitor_from, blocked=(), fail=(), serve=False):
    calls = []

    def served(task, day):  # what `make run` does before a monitored day's run
        calls.append({"served": day, "task": task})

    def runner(job, keys, stage, tags=None, run_config=None):
        calls.append(
            {
                "job": job,
                "assets": {k.path[-1] for k in keys},
                "stage": stage,
                "tags": tags or {},
                "ops": (run_config or {}).get("ops", {}),
            }
        )
        return RunResult(f"run-{len(calls)}", job, stage not in fail)

    keys = [k for k in graph.materializable_asset_keys if k.path[0] == TASK]
    _task_window(
        runner,
        TASK,
        keys,
        graph,
        start,
        end,
        set(blocked),
        monitor_from,
        before_monitored=served if serve else None,
    )
    return calls


def test_each_monitored_day_is_served_live_before_its_run(graph):
    """`make run` serves a monitored day's live traffic (issue 24) just before the day's run
    judges it, and none on the training days; a blocked day is neither served nor run."""
    calls = _plan(
        graph, date(2013, 1, 1), date(2013, 1, 31), date(2013, 1, 28), {"2013-01-30"}, serve=True
    )
    tail = calls[calls.index(next(c for c in calls if "served" in c)) :]
    assert [c.get("served") or c["tags"]["dagster/partition"] for c in tail] == [
        d for day in ("2013-01-28", "2013-01-29", "2013-01-31") for d in (day, day)
    ]
    assert ["served" in c for c in tail] == [True, False] * 3
    assert {c["task"] for c in tail if "served" in c} == {TASK}
    assert not any("served" in c for c in calls[: -len(tail)])


def test_the_champion_is_trained_on_the_first_days_and_the_rest_are_monitored(graph):
    calls = _plan(graph, date(2013, 1, 1), date(2013, 1, 31), date(2013, 1, 25))
    assert [c["job"] for c in calls] == [
        f"{TASK}_reference_data",
        f"{TASK}_partitions",
        f"{TASK}_retrain",
        *[f"{TASK}_partitions"] * 7,
    ]
    reference, train, retrain, *tail = calls
    assert reference["assets"] == {
        "airlines",
        "airports",
        "planes",
        "plane_features",
        "feast_definitions",
    }
    assert train["tags"] == {
        "dagster/asset_partition_range_start": "2013-01-01",
        "dagster/asset_partition_range_end": "2013-01-24",
    }
    # Before the champion there is nothing to monitor against: no drift report for those days,
    # and nothing served them (prediction_log hangs from the deployment that serves).
    assert {"raw_flights", "training_set"} <= train["assets"]
    assert not {"prediction_log", "drift_report", "live_performance"} & train["assets"]
    assert retrain["assets"] == {
        "lgbm_model",
        "torch_model",
        "model_evaluation",
        "champion",
        "bento",
        "deployment",  # issue 17: rolls the service on a cluster, a recorded no-op without one
        "drift_reference",
    }
    assert {op["config"]["until"] for op in retrain["ops"].values()} == {"2013-01-24"}
    assert [c["tags"] for c in tail] == [
        {"dagster/partition": f"2013-01-{d}"} for d in range(25, 32)
    ]
    assert all(
        {"prediction_log", "drift_report", "live_performance", "raw_flights"} <= c["assets"]
        for c in tail
    )


def test_a_blocked_day_is_left_out_and_a_failed_range_does_not_stop_the_rest(graph):
    calls = _plan(
        graph,
        date(2013, 1, 1),
        date(2013, 1, 31),
        date(2013, 1, 25),
        blocked={"2013-01-10", "2013-01-28"},
    )
    ranges = [
        (
            c["tags"]["dagster/asset_partition_range_start"],
            c["tags"]["dagster/asset_partition_range_end"],
        )
        for c in calls
        if "dagster/asset_partition_range_start" in c["tags"]
    ]
    assert ranges == [("2013-01-01", "2013-01-09"), ("2013-01-11", "2013-01-24")]
    days = [c["tags"]["dagster/partition"] for c in calls if "dagster/partition" in c["tags"]]
    assert "2013-01-28" not in days and len(days) == 6
    # Reference data that fails stops everything: nothing downstream could read it.
    assert [
        c["job"]
        for c in _plan(graph, date(2013, 1, 1), date(2013, 1, 31), None, fail={"reference"})
    ] == [f"{TASK}_reference_data"]


def test_without_monitored_days_every_day_trains_the_champion(graph):
    calls = _plan(graph, date(2013, 1, 1), date(2013, 1, 9), None)
    assert [c["stage"] for c in calls] == ["reference", "partitions", "retrain"]
    assert {"drift_report", "live_performance"} <= calls[1]["assets"]
    assert not calls[2]["ops"]  # the models read every labelled day


def test_the_monitored_days_leave_a_week_of_training_besides_validation_and_holdout():
    task = load_task(TASK)  # split: 7 validation + 7 holdout days
    assert monitored_from(task, date(2013, 1, 1), date(2013, 1, 31), 7) == date(2013, 1, 25)
    assert monitored_from(task, date(2013, 1, 1), date(2013, 1, 28), 7) == date(2013, 1, 22)
    assert monitored_from(task, date(2013, 1, 1), date(2013, 1, 27), 7) is None
    assert monitored_from(task, date(2013, 1, 1), date(2013, 1, 31), 0) is None
