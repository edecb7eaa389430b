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


def _decide(instance, action: str = "auto", who: str = "", why: str = ""):
    """The rollout decision job's analysis and decision, in-process, with a Launchpad config."""
    from pipelines.platform.components.rollout import rollout_defs
    from pipelines.platform.resources_config import embedded_resources

    task = rollout_task()
    assets = list(rollout_defs(task).assets)  # live_ab_analysis and rollout, unbound
    config = {"action": action, "who": who, "why": why}
    result = dg.materialize(
        assets,
        instance=instance,
        resources=embedded_resources(),
        run_config={"ops": {"flight_delay__rollout": {"config": config}}},
    )
    assert result.success
    [decided] = [
        m
        for m in result.asset_materializations_for_node("flight_delay__rollout")
        if m.asset_key == task.key("rollout")
    ]
    return {k: v.value for k, v in decided.metadata.items()}


def test_a_human_promotes_or_aborts_from_the_launchpad(instance, data_paths):
    from pipelines.platform.lib.rollout import RolloutState
    from pipelines.platform.resources_config import embedded_resources

    registry = embedded_resources()["mlflow"].registry()
    client = registry.client
    client.create_registered_model("flight_delay")
    for _ in range(3):
        version = client.create_model_version("flight_delay", source=str(data_paths.root))
        client.set_model_version_tag("flight_delay", version.version, "evaluated_by_run", "r")
    client.set_registered_model_alias("flight_delay", "champion", "1")

    assert _decide(instance)["stage"] == "none"  # nothing in rollout: the champion alone
    registry.start_rollout("flight_delay", RolloutState("shadow", "2", "1", 0.1, "gate"), "r")
    waiting = _decide(instance)  # no live evidence yet: the gate waits
    assert (waiting["stage"], waiting["live_gate"]) == ("shadow", "wait")

    aborted = _decide(instance, "abort", "ana", "the canary's complaints")
    assert aborted["stage"] == "rollback" and aborted["version"] == "2"
    assert aborted["decision"] == "aborted by ana: the canary's complaints"
    assert client.get_model_version("flight_delay", "2").tags["rollout_stage"] == "rollback"
    assert registry.champion_version("flight_delay") == "1"

    registry.start_rollout("flight_delay", RolloutState("shadow", "3", "1", 0.1, "gate"), "r")
    assert _decide(instance, "promote", "bo", "looks right")["stage"] == "canary"
    promoted = _decide(instance, "promote", "bo", "a week of canary")
    assert promoted["stage"] == "champion" and promoted["champion_version"] == "3"
    assert registry.champion_version("flight_delay") == "3"
    assert registry.rollout_version("flight_delay") is None
