"""The embedded profile's event log (pipelines/platform/sqlite_event_log.py): what it writes is
Dagster's own SQLite event log, read back as such; a run's watchers (the UI's live log) see each
event as it is written; a forked process writes through connections of its own."""

import multiprocessing
import time

import dagster as dg
import pytest

from pipelines.platform.sqlite_event_log import (
    PooledSqliteEventLogStorage,
    SqliteEventLogStorage,
    embedded_overrides,
    embedded_profile_yaml,
)

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def readings(context: dg.AssetExecutionContext) -> None:
    for key in context.partition_keys:
        context.log_event(dg.AssetObservation(asset_key=context.asset_key, partition=key))


@dg.asset_check(asset=readings, blocking=True)
def readings_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def _wait_for(condition, what: str, deadline_s: float = 60):
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_embedded_profile_selects_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(embedded_profile_yaml())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert storage._base_dir == str(home / "history" / "runs")  # Dagster's default place


def test_a_ranged_run_reads_back_through_dagsters_own_sqlite_storage(tmp_path):
    home = tmp_path
    with dg.instance_for_test(temp_dir=str(home), overrides=embedded_overrides(home)) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        result = dg.materialize(
            [readings, readings_present],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2024-01-01",
                "dagster/asset_partition_range_end": "2024-01-03",
            },
        )
        assert result.success
        written = [r.event_log_entry for r in instance.get_records_for_run(result.run_id).records]
    # A plain Dagster SQLite event log over the same folder reads the same events.
    plain = SqliteEventLogStorage(str(home / "history" / "runs"))
    read = [r.event_log_entry for r in plain.get_records_for_run(result.run_id).records]
    assert [e.dagster_event_type for e in read] == [e.dagster_event_type for e in written]
    materialized = plain.get_materialized_partitions(readings.key)
    assert materialized == {"2024-01-01", "2024-01-02", "2024-01-03"}
    observed = plain.fetch_observations(readings.key, limit=10).records
    assert sorted(r.partition_key for r in observed) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    plain.dispose()


def test_a_runs_watcher_sees_each_event_as_it_is_written(tmp_path):
    home = tmp_path
    with dg.instance_for_test(temp_dir=str(home), overrides=embedded_overrides(home)) as instance:
        result = dg.materialize([readings], instance=instance, partition_key="2024-01-01")
        run = instance.get_run_by_id(result.run_id)
        seen: list[str] = []
        end = instance.get_records_for_run(result.run_id).cursor
        instance.watch_event_logs(result.run_id, end, lambda entry, _cursor: seen.append(entry))
        for n in range(3):
            instance.report_engine_event(f"note {n}", run)
            _wait_for(lambda n=n: len(seen) == n + 1, f"the watcher to see event {n}")
        assert [e.message for e in seen] == ["note 0", "note 1", "note 2"]


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (Linux)"
)
def test_a_forked_process_writes_through_connections_of_its_own(tmp_path):
    home = tmp_path
    with dg.instance_for_test(temp_dir=str(home), overrides=embedded_overrides(home)) as instance:
        result = dg.materialize([readings], instance=instance, partition_key="2024-01-02")
        storage = instance.event_log_storage
        assert storage._engines  # the parent holds open connections when it forks
        parent_records = len(instance.get_records_for_run(result.run_id).records)

        inherited = {id(engine) for engine in storage._engines.values()}

        def child() -> None:  # inherits the parent's storage object, pool and all
            instance.report_engine_event("from the child", instance.get_run_by_id(result.run_id))
            # It wrote through engines of its own, none of the parent's.
            if {id(engine) for engine in storage._engines.values()} & inherited:
                raise SystemExit(3)

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(timeout=120)
        assert process.exitcode == 0
        instance.report_engine_event("from the parent", instance.get_run_by_id(result.run_id))
        messages = [
            r.event_log_entry.message
            for r in instance.get_records_for_run(result.run_id).records[parent_records:]
        ]
        assert messages == ["from the child", "from the parent"]


def test_a_table_is_remembered_once_present_never_while_absent(tmp_path):
    """`has_table` is asked on every asset event: a present table is remembered, an absent one is
    asked again (an upgrade may add it)."""
    import sqlite3

    storage = PooledSqliteEventLogStorage(str(tmp_path / "runs"))
    try:
        assert storage.has_table("asset_event_tags")  # Dagster's own table, made at init
        assert not storage.has_table("added_later")
        with sqlite3.connect(storage.path_for_shard("index")) as conn:
            conn.execute("create table added_later (id integer)")
        assert storage.has_table("added_later")
    finally:
        storage.dispose()
