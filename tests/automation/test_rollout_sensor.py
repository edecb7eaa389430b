"""The rollout sensor evaluated over a real instance: it asks the live gate again only while a
challenger is in shadow or canary, and only when labels landed since the last decision."""

import dagster as dg

from pipelines.platform.components.rollout import rollout_sensor_name
from tests.e2e.rollout_location import rollout_definitions, rollout_task


def _tick(definitions, instance):
    sensor = definitions.resolve_sensor_def(rollout_sensor_name(rollout_task()))
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance))


def _materialize(instance, key, **metadata) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key, metadata=metadata))


def test_the_live_gate_is_asked_again_only_when_labels_land_during_a_rollout(instance):
    definitions = rollout_definitions()
    task = rollout_task()
    rollout, examples = task.key("rollout"), task.key(task.definition.examples.table)

    assert "no rollout decided yet" in _tick(definitions, instance).skip_message
    _materialize(instance, examples)
    _materialize(instance, rollout, stage="shadow", version="5", decision="passed the gate")
    assert "no labels landed since the last decision" in _tick(definitions, instance).skip_message

    _materialize(instance, examples)  # a day lands: its labels are known
    [request] = _tick(definitions, instance).run_requests
    assert (
        request.run_key.startswith("rollout-")
        and request.tags["flightline/rollout_stage"] == "shadow"
    )
    sensor = definitions.resolve_sensor_def(rollout_sensor_name(task))
    assert sensor.job_name == f"{task.name}_rollout_decision"
    # Evaluated again before anything changed: the same run key (the daemon launches it once).
    [again] = _tick(definitions, instance).run_requests
    assert again.run_key == request.run_key

    _materialize(instance, rollout, stage="canary", version="5", decision="live gate passed")
    assert "no labels landed" in _tick(definitions, instance).skip_message
    _materialize(instance, examples)
    [canary] = _tick(definitions, instance).run_requests
    assert canary.run_key != request.run_key and canary.tags["flightline/rollout_stage"] == "canary"

    _materialize(instance, rollout, stage="rollback", version="5", decision="rolled back")
    _materialize(instance, examples)
    assert "no challenger in shadow or canary" in _tick(definitions, instance).skip_message


def test_a_task_without_a_rollout_block_has_no_rollout_asset_and_promotes_at_once():
    from pipelines.definitions import defs

    graph = defs().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "flight_delay/champion" in keys and "flight_delay/rollout" not in keys
    with_rollout = rollout_definitions().resolve_asset_graph()
    bento = with_rollout.get(dg.AssetKey(["flight_delay", "bento"]))
    assert dg.AssetKey(["flight_delay", "rollout"]) in bento.parent_keys
