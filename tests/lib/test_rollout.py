"""Rollout logic: stable canary assignment, stage transitions, and the live gate (the offline
gate's criteria on labelled live rows)."""

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.lib.evaluation import live_gate
from pipelines.platform.lib.rollout import (
    RolloutState,
    advance,
    answers_with_challenger,
    canary_bucket,
    manual,
)
from pipelines.platform.lib.task import GateThresholds


def test_canary_assignment_is_stable_and_close_to_the_share():
    entities = [f"N{i:05d}" for i in range(20_000)]
    first = [answers_with_challenger(e, "v7", 0.2) for e in entities]
    assert first == [answers_with_challenger(e, "v7", 0.2) for e in entities]
    assert abs(np.mean(first) - 0.2) < 0.015
    # Another rollout (salt) reshuffles who is in the canary.
    other = [answers_with_challenger(e, "v8", 0.2) for e in entities]
    assert 0.1 < np.mean(np.array(first) != np.array(other)) < 0.5
    # Growing the share only adds entities: nobody flips back to the champion.
    wider = [answers_with_challenger(e, "v7", 0.5) for e in entities]
    assert all(w for f, w in zip(first, wider, strict=True) if f)
    assert 0 <= canary_bucket("x", "s") < 1


def _state(stage="shadow"):
    return RolloutState(stage, "4", "3", 0.2, "started")


def test_stages_move_on_verdicts_and_stop_at_the_end():
    s = advance(_state(), "wait", [], "120 rows")
    assert s.stage == "shadow"
    s = advance(s, "advance", [], "2000 rows")
    assert s.stage == "canary" and "2000 rows" in s.decision
    s = advance(s, "advance", [], "4000 rows")
    assert s.stage == "champion"
    assert advance(s, "rollback", ["worse"], "x").stage == "champion"
    back = advance(_state(), "rollback", ["AUC gain -0.05"], "2000 rows")
    assert back.stage == "rollback" and "AUC gain -0.05" in back.decision


def test_a_human_promotes_or_aborts_with_a_name_and_a_reason():
    assert manual(_state(), "promote", "ana", "looks fine").stage == "canary"
    aborted = manual(_state("canary"), "abort", "ana", "pager")
    assert aborted.stage == "rollback" and "ana" in aborted.decision
    with pytest.raises(ValueError, match="over"):
        manual(aborted, "promote", "ana", "oops")
    with pytest.raises(ValueError, match="unknown rollout stage"):
        RolloutState("live", "1", "0", 0.1, "")


def _live(rows: int, challenger_noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    y = (signal + rng.normal(scale=1.0, size=rows) > 0.8).astype(float)
    champion = 1 / (1 + np.exp(-(signal + rng.normal(scale=1.5, size=rows))))
    challenger = 1 / (1 + np.exp(-(signal + rng.normal(scale=challenger_noise, size=rows))))
    return pd.DataFrame(
        {
            "label": y,
            "champion": champion,
            "challenger": challenger,
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
        }
    )


def test_the_live_gate_waits_then_advances_a_better_challenger():
    t = GateThresholds(bootstrap_samples=200)
    live = _live(3000, challenger_noise=0.3)
    early = live_gate(live.iloc[:100], "label", "challenger", "champion", ["origin"], t, 500)
    assert early.verdict == "wait" and "100 labelled live rows" in early.reasons[0]
    # Unlabelled rows (label not known yet) are not evidence.
    unlabelled = live.assign(label=np.nan)
    assert live_gate(unlabelled, "label", "challenger", "champion", [], t, 500).verdict == "wait"
    verdict = live_gate(live, "label", "challenger", "champion", ["origin"], t, 500)
    assert verdict.verdict == "advance", verdict.reasons
    assert verdict.metrics["challenger"]["roc_auc"] > verdict.metrics["champion"]["roc_auc"]
    assert verdict.gate.interval.low > 0


def test_the_live_gate_rolls_back_a_worse_challenger_with_the_reason():
    t = GateThresholds(bootstrap_samples=200)
    live = _live(3000, challenger_noise=0.3)
    shuffled = live.assign(challenger=np.random.default_rng(1).permutation(live["challenger"]))
    verdict = live_gate(shuffled, "label", "challenger", "champion", ["origin"], t, 500)
    assert verdict.verdict == "rollback"
    assert any("below the margin" in r for r in verdict.reasons)


def test_an_inconclusive_challenger_waits_for_more_evidence_up_to_the_maximum():
    t = GateThresholds(bootstrap_samples=200)
    live = _live(600, challenger_noise=1.5, seed=3)  # as noisy as the champion: no clear gain
    waiting = live_gate(live, "label", "challenger", "champion", ["origin"], t, 300, 2000)
    assert waiting.verdict == "wait", waiting.reasons
    assert "inconclusive after 600 labelled rows (of at most 2000)" in waiting.reasons[0]
    assert waiting.gate.interval.low <= 0 < waiting.gate.interval.high
    # At the maximum the benefit of the doubt ends: not shown better, rolled back.
    ended = live_gate(live, "label", "challenger", "champion", ["origin"], t, 300, 600)
    assert ended.verdict == "rollback" and "not a clear improvement" in "; ".join(ended.reasons)


@pytest.mark.slow
def test_the_live_ab_analysis_gives_intervals_that_separate_a_better_model():
    from pipelines.platform.lib.plots import live_ab_chart
    from pipelines.platform.lib.rollout import live_ab_analysis

    live = _live(3000, challenger_noise=0.3)
    table = live_ab_analysis(live, "label", ["champion", "challenger"], samples=100).set_index(
        "model"
    )
    for model in ("champion", "challenger"):
        row = table.loc[model]
        for metric in ("roc_auc", "log_loss", "ece", "mean_score"):
            assert row[f"{metric}_low"] <= row[metric] <= row[f"{metric}_high"]
        assert row["score_p10"] <= row["score_p50"] <= row["score_p90"]
    assert table.loc["challenger", "roc_auc_low"] > table.loc["champion", "roc_auc_high"]
    png = live_ab_chart(
        live["label"].to_numpy(), {m: live[m].to_numpy() for m in ("champion", "challenger")}, "t"
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(ValueError, match="both classes"):
        live_ab_analysis(live.assign(label=0.0), "label", ["champion"])


def _registry_with_versions(tmp_path, count: int):
    """A real MLflow registry (SQLite) holding `count` evaluated versions of one model, v1 the
    champion."""
    from pipelines.platform.lib.tracking import CHAMPION, ModelRegistry

    registry = ModelRegistry(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "artifacts"))
    client = registry.client
    client.create_registered_model("toy")
    for _ in range(count):
        version = client.create_model_version("toy", source=str(tmp_path / "model"))
        client.set_model_version_tag("toy", version.version, "evaluated_by_run", "r")
    client.set_registered_model_alias("toy", CHAMPION, "1")
    return registry


@pytest.mark.slow
def test_the_registry_follows_a_rollout_through_its_stages(tmp_path):
    registry = _registry_with_versions(tmp_path, 2)
    state = RolloutState("shadow", "2", "1", 0.2, "passed the offline gate")
    assert registry.start_rollout("toy", state, "run-1") is None
    assert str(registry.alias("toy", "shadow").version) == "2"
    assert registry.rollout_state("toy") == state
    canary = advance(state, "advance", [], "300 rows")
    registry.apply_rollout("toy", canary)
    assert (
        registry.alias("toy", "shadow") is None
        and str(registry.alias("toy", "canary").version) == "2"
    )
    assert registry.rollout_state("toy").stage == "canary"
    assert registry.champion_version("toy") == "1"  # nothing promoted before the end
    done = advance(canary, "advance", [], "310 rows")
    assert registry.apply_rollout("toy", done) == "1"  # the version it replaced
    assert registry.champion_version("toy") == "2" and registry.rollout_version("toy") is None
    tags = registry.client.get_model_version("toy", "2").tags
    assert (
        tags["rollout_stage"] == "champion"
        and "live gate passed in canary" in tags["rollout_decision"]
    )


@pytest.mark.slow
def test_a_rollback_leaves_the_champion_and_a_newer_challenger_supersedes(tmp_path):
    registry = _registry_with_versions(tmp_path, 3)
    registry.start_rollout("toy", RolloutState("shadow", "2", "1", 0.2, "gate"), "run-1")
    # v3 passes the offline gate while v2 is still in shadow: v2's rollout ends, recorded.
    superseded = registry.start_rollout("toy", RolloutState("shadow", "3", "1", 0.2, "g"), "r2")
    assert superseded.challenger_version == "2"
    v2 = registry.client.get_model_version("toy", "2").tags
    assert v2["rollout_stage"] == "rollback" and "superseded by v3" in v2["rollout_decision"]
    assert str(registry.alias("toy", "shadow").version) == "3"
    back = advance(registry.rollout_state("toy"), "rollback", ["AUC gain -0.08"], "400 rows")
    registry.apply_rollout("toy", back)
    assert registry.rollout_version("toy") is None and registry.champion_version("toy") == "1"
    assert (
        "AUC gain -0.08" in registry.client.get_model_version("toy", "3").tags["rollout_decision"]
    )


def test_live_requests_are_labelled_by_their_example_once_the_label_is_known():
    from pipelines.platform.components.task import load_task
    from pipelines.platform.lib.rollout import labelled_live_rows, request_keys

    task = load_task("flight_delay")
    stamp = pd.Timestamp("2013-01-10 13:00", tz="UTC")
    flights = [
        {"carrier": "UA", "flight": 1, "tailnum": "N1", "origin": "EWR", "dest": "IAH"},
        {"carrier": "AA", "flight": 2, "tailnum": "N2", "origin": "JFK", "dest": "MIA"},
        {"carrier": "B6", "flight": 3, "tailnum": "N3", "origin": "JFK", "dest": "BOS"},
        {"carrier": "DL", "flight": 4, "tailnum": "N4", "origin": "LGA", "dest": "ATL"},
    ]
    log = pd.DataFrame(
        [
            {
                **{f"request.{k}": v for k, v in f.items()},
                "request.sched_dep_ts": stamp.isoformat(),
                "request.distance": 1000.0,
                "champion_score": 0.2,
                "challenger_score": 0.3,
                "served_by": "champion",
            }
            for f in flights
        ]
    )
    known_at = [stamp + pd.Timedelta(hours=h) for h in (3, 3, 30, 3)]
    examples = pd.DataFrame(
        [
            {**f, "sched_dep_ts": stamp, "distance": 1000.5, "label": i % 2, "label_known_at": k}
            for i, (f, k) in enumerate(zip(flights[:3], known_at, strict=False))
        ]
    )
    assert "distance" not in request_keys(
        task.domain.request_frame(log.rename(columns=lambda c: c.removeprefix("request."))),
        examples,
        "sched_dep_ts",
    )
    rows = labelled_live_rows(log, examples, task.spec, task.domain, stamp + pd.Timedelta(hours=6))
    # Known by then: the first two; the third lands later (pending); the fourth has no example.
    assert rows["label"].tolist()[:2] == [0.0, 1.0]
    assert rows["label"].iloc[2:].isna().all()
    assert rows["origin"].tolist() == ["EWR", "JFK", "JFK", "LGA"]
    assert rows["challenger_score"].tolist() == [0.3] * 4
