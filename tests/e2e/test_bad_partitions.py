"""A bad day file fails clearly, nothing downstream consumes it, the file stays, and a corrected
file can be re-landed and re-materialized."""

from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pipelines.platform.cli import materialize_window
from pipelines.tasks.flight_delay.replay import replay_days
from tests.conftest import source_day

DAY = "2013-01-03"
D = date.fromisoformat(DAY)


@pytest.fixture
def landed(data_paths, instance):
    replay_days(data_paths.landing_for("flight_delay"), date(2013, 1, 1), D)
    # the two days before, so the row-count check has history
    assert all(
        r.success
        for r in materialize_window(
            date(2013, 1, 1), date(2013, 1, 2), instance, only={"raw_flights", "raw_weather"}
        )
    )
    return data_paths, instance


def _flights_file(paths) -> Path:
    return Path(paths.landing_for("flight_delay")) / "flights" / f"{DAY}.csv"


def _check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_duplicated_flights_block_downstream_and_a_correction_recovers(landed):
    paths, instance = landed
    good = source_day("flights", DAY)
    pd.concat([good, good.head(3)]).to_csv(_flights_file(paths), index=False, na_rep="NA")

    [result] = materialize_window(D, D, instance, only={"raw_flights", "flight_timeline"})
    assert not result.success
    evaluation = _check_evaluations(result)["raw_flights_unique_rows"]
    assert not evaluation.passed
    failures = evaluation.metadata["failures"].value
    assert failures[0]["rows"] == 6 and len(failures[0]["sample"]) == 5
    assert "expect_compound_columns_to_be_unique" in failures[0]["expectation"]
    assert DAY not in instance.get_materialized_partitions(
        dg.AssetKey(["flight_delay", "flight_timeline"])
    )
    assert _flights_file(paths).exists()  # the raw file is kept

    # a later run of the consumer alone still refuses the bad day
    [again] = materialize_window(D, D, instance, only={"flight_timeline"})
    assert not again.success
    failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
    assert "raw_flights_unique_rows failed" in failure.step_failure_data.error.message

    # re-land the corrected file: the day goes through
    good.to_csv(_flights_file(paths), index=False, na_rep="NA")
    [fixed] = materialize_window(D, D, instance, only={"raw_flights", "flight_timeline"})
    assert fixed.success
    assert DAY in instance.get_materialized_partitions(
        dg.AssetKey(["flight_delay", "flight_timeline"])
    )
    archived = list((Path(paths.root) / "archive" / "flight_delay" / "flights" / DAY).iterdir())
    assert len(archived) == 2  # both versions that landed are kept


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (bytes(range(256)) * 8, "not a readable CSV file")],
    ids=["empty-file", "not-a-csv"],
)
def test_unreadable_files_fail_the_ingestion_with_the_reason(landed, content, message):
    paths, instance = landed
    _flights_file(paths).write_bytes(content)
    [result] = materialize_window(D, D, instance, only={"raw_flights", "flight_timeline"})
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        failure.step_key == "flight_delay__raw_flights"
        and message in failure.step_failure_data.error.message
    )
    assert DAY not in instance.get_materialized_partitions(
        dg.AssetKey(["flight_delay", "flight_timeline"])
    )
    assert _flights_file(paths).read_bytes() == content


def test_wrong_day_rows_and_low_row_count_are_named(landed):
    paths, instance = landed
    day = source_day("flights", DAY).head(40)
    day.loc[day.index[:2], "day"] = 4
    day.to_csv(_flights_file(paths), index=False, na_rep="NA")
    [result] = materialize_window(D, D, instance, only={"raw_flights", "flight_timeline"})
    evaluations = _check_evaluations(result)
    assert not evaluations["raw_flights_on_partition_day"].passed
    assert not evaluations["raw_flights_row_count"].passed
    assert evaluations["raw_flights_schema"].passed
    assert DAY not in instance.get_materialized_partitions(
        dg.AssetKey(["flight_delay", "flight_timeline"])
    )


def test_a_day_missing_a_file_is_blocked_and_the_others_of_the_range_complete(data_paths, instance):
    """`make run` over a range where one day lacks its weather file (as 2013-12-31 does in the
    source): that day is blocked, named, and the days around it run."""
    from pipelines.platform.cli import blocked_partitions
    from pipelines.platform.components.task import load_task

    task = load_task("flight_delay")
    landing = data_paths.landing_for("flight_delay")
    replay_days(landing, date(2013, 1, 1), date(2013, 1, 4))
    (landing / "weather" / "2013-01-02.csv").unlink()
    blocked = blocked_partitions(task, landing, date(2013, 1, 1), date(2013, 1, 5))
    assert blocked == {"2013-01-02": "no weather file", "2013-01-05": "no flights, weather file"}
    results = materialize_window(
        date(2013, 1, 1),
        date(2013, 1, 5),
        instance,
        only={"raw_flights", "raw_weather", "weather_features"},
        blocked=set(blocked),
    )
    assert len(results) == 2 and all(r.success for r in results)  # 01-01, then 01-03..01-04
    built = instance.get_materialized_partitions(dg.AssetKey(["flight_delay", "weather_features"]))
    assert built == {"2013-01-01", "2013-01-03", "2013-01-04"}


def check_statuses(instance, asset: str, check: str) -> dict[str, str]:
    """What the UI's Checks tab shows per partition: the status of each day's latest evaluation."""
    key = dg.AssetCheckKey(dg.AssetKey(["flight_delay", asset]), check)
    infos = instance.event_log_storage.get_asset_check_partition_info([key])
    return {i.partition_key: i.latest_execution_status.value for i in infos}


def test_a_ranged_run_records_each_days_check_result_under_its_day(landed):
    paths, instance = landed
    good = source_day("flights", DAY)
    pd.concat([good, good.head(3)]).to_csv(_flights_file(paths), index=False, na_rep="NA")

    [result] = materialize_window(date(2013, 1, 1), D, instance, only={"raw_flights"})
    assert not result.success  # a blocking check failed on one day of the three
    assert check_statuses(instance, "raw_flights", "raw_flights_unique_rows") == {
        "2013-01-01": "SUCCEEDED",
        "2013-01-02": "SUCCEEDED",
        DAY: "FAILED",
    }
    assert set(check_statuses(instance, "raw_flights", "raw_flights_schema").values()) == {
        "SUCCEEDED"
    }
    [failed] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    ]
    assert failed.partition == DAY and failed.metadata["failed_rows"].value == 6
    assert (
        not [  # no evaluation without a partition (the UI would list it as "Skipped")
            e
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.partition is None
        ]
    )
