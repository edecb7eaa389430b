"""The predictor with a challenger beside the champion, over a real (scratch) Feast store and the
real prediction log: in shadow the champion answers and both scores are logged; in canary each
entity is answered by the model its hash assigns, every time."""

from datetime import UTC, datetime

import numpy as np
import pytest

from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.prediction_log import PredictionLogWriter, read_day
from pipelines.platform.lib.predictor import Challenger, ModelInfo, Predictor
from pipelines.platform.lib.rollout import answers_with_challenger
from tests.feast_scratch import task_store

TASK = load_task("flight_delay")
DAY = "2013-01-01"


class Constant:
    """A model that scores every row the same (which model answered is then plain to see)."""

    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, features):
        return np.full(len(features), self.score)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feast")
    return task_store(folder, Lake(str(folder / "lake")), TASK, "rollout")


def _requests(n: int) -> list[dict]:
    base = TASK.domain.warm_up_request
    return [
        {
            **base,
            "tailnum": f"N{i % 40:03d}",
            "flight": i,
            "sched_dep_ts": datetime(2013, 1, 1, 12, i % 60, tzinfo=UTC),
        }
        for i in range(n)
    ]


def _predictor(store, log, challenger):
    return Predictor(
        TASK.spec,
        TASK.domain,
        store,
        Constant(0.2),
        ModelInfo(TASK.name, "3", "m:3"),
        log=log,
        challenger=challenger,
        score_field="p",
        partition_of=TASK.partition_of,
    )


def test_shadow_answers_with_the_champion_and_logs_both(store, tmp_path):
    log = PredictionLogWriter(tmp_path / "log", flush_every_s=0.05)
    shadow = Challenger(Constant(0.7), ModelInfo(TASK.name, "4", "m:4"), "shadow")
    answers = _predictor(store, log, shadow).predict(_requests(50))
    log.close()
    assert {(a["p"], a["model_version"]) for a in answers} == {(0.2, "3")}
    logged, _ = read_day(tmp_path / "log", DAY)
    assert len(logged) == 50
    assert set(logged["champion_score"]) == {0.2} and set(logged["challenger_score"]) == {0.7}
    assert set(logged["served_by"]) == {"champion"} and set(logged["rollout_stage"]) == {"shadow"}
    print(
        f"\nshadow: {len(answers)} answered by the champion, {len(logged)} logged with both scores"
    )


def test_canary_answers_each_entity_with_the_model_its_hash_assigns(store, tmp_path):
    log = PredictionLogWriter(tmp_path / "log", flush_every_s=0.05)
    canary = Challenger(Constant(0.7), ModelInfo(TASK.name, "4", "m:4"), "canary", 0.3, "tailnum")
    predictor = _predictor(store, log, canary)
    requests = _requests(400)
    answers = predictor.predict(requests[:200]) + predictor.predict(requests[200:])
    log.close()
    expected = [answers_with_challenger(r["tailnum"], "4", 0.3) for r in requests]
    got = [a["model_version"] == "4" for a in answers]
    assert got == expected
    assert all(a["p"] == (0.7 if c else 0.2) for a, c in zip(answers, got, strict=True))
    # One entity, one model: every tail number is answered by one version only.
    by_entity: dict[str, set] = {}
    for r, a in zip(requests, answers, strict=True):
        by_entity.setdefault(r["tailnum"], set()).add(a["model_version"])
    assert all(len(v) == 1 for v in by_entity.values())
    assert 0 < sum(got) < len(got)
    logged, _ = read_day(tmp_path / "log", DAY)
    assert (logged["served_by"] == "challenger").sum() == sum(got)
    print(
        f"\ncanary: {sum(got)} of {len(got)} requests ({len(by_entity)} entities) answered by "
        f"the challenger, each as its entity hash assigns"
    )


def test_a_canary_without_an_entity_field_is_refused():
    with pytest.raises(ValueError, match="entity"):
        Challenger(Constant(0.5), ModelInfo(TASK.name, "4", "m:4"), "canary", 0.3)
