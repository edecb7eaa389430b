"""The live path's platform pieces (issue 24): declarations, the honest-TTL rule, the feed's
clock, views without a live path reported unavailable, `withheld_views` from the store's clock
alone, labels cut at an instant, and `flightline run` never replaying over a landed file."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.platform.components.definition import TaskDefinition
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.labels import known_by
from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.live import (
    LiveFeed,
    LivePathError,
    ViewLivePath,
    _check_honest,
)
from pipelines.platform.lib.predictor import ModelInfo, Predictor
from tests.live_world import ScoreModel, dict_reader, scratch_store

WIND = load_task("wind_power")


def test_a_feast_table_without_a_live_path_is_refused():
    attributes = WIND.definition.model_dump()
    attributes["feature_tables"][0]["live"] = None
    with pytest.raises(ValueError, match=r"scada_features\.live"):
        TaskDefinition.model_validate(attributes)
    attributes["feature_tables"][0]["live"] = {"kind": "none"}
    with pytest.raises(ValueError, match="say why"):
        TaskDefinition.model_validate(attributes)
    attributes["feature_tables"][0]["live"] = {"kind": "published"}
    with pytest.raises(ValueError, match=r"live\.every"):
        TaskDefinition.model_validate(attributes)


def test_a_ttl_shorter_than_the_refresh_cadence_is_not_honest():
    _check_honest("t", ViewLivePath("v", "t", "published", "15min", 3600.0))
    with pytest.raises(LivePathError, match="not honest"):
        _check_honest("t", ViewLivePath("v", "t", "published", "1D", 3600.0))
    with pytest.raises(LivePathError, match="TTL 0"):
        _check_honest("t", ViewLivePath("v", "t", "static", None, 60.0))


def test_labels_are_used_only_once_known():
    table = pd.DataFrame(
        {
            "label_known_at": pd.to_datetime(
                ["2013-01-01T06:00Z", "2013-01-02T07:30Z", None], utc=True
            )
        }
    )
    assert known_by(table, "2013-01-02T07:00Z").tolist() == [True, False, False]
    assert known_by(table, "2013-01-02T07:30+00:00").tolist() == [True, True, False]
    assert known_by(pd.DataFrame({"x": [1]}), "2013-01-01").tolist() == [True]


@pytest.fixture(scope="module")
def wind_store(tmp_path_factory):
    from pipelines.tasks.wind_power.source import day_key, read_scada

    frame = read_scada()
    day = day_key(frame["Date_time"])
    raw = frame[(day >= "2014-09-09") & (day <= "2014-09-10")].reset_index(drop=True)
    raw = raw.assign(**{PARTITION_COLUMN: day_key(raw["Date_time"])})
    folder = tmp_path_factory.mktemp("live")
    read = dict_reader({"scada": raw})
    return scratch_store(WIND, read, ["2014-09-10"], folder), read


def _predictor(store, **kwargs):
    return Predictor(
        WIND.spec,
        WIND.domain,
        store,
        ScoreModel(WIND.spec),
        ModelInfo("wind_power", "1", "w:1"),
        **kwargs,
    )


@pytest.mark.slow
def test_feed_clock_unavailable_views_and_withheld_from_the_clock_alone(wind_store):
    store, read = wind_store
    t = pd.Timestamp("2014-09-10T10:00Z")
    feed = LiveFeed(WIND, store, read)
    first = feed.advance_to(t - pd.Timedelta(hours=1))
    assert first["turbine_recent_scada"] > 0
    assert feed.advance_to(t)["turbine_recent_scada"] == 4 * 6  # 4 turbines, 6 intervals
    with pytest.raises(LivePathError, match="cannot go back"):
        feed.advance_to(t - pd.Timedelta(minutes=10))

    at_clock = {"turbine": "R80711", "predicted_at": t}
    behind = {"turbine": "R80711", "predicted_at": t - pd.Timedelta(minutes=30)}
    live = _predictor(store, store_clock=feed.clock_seconds)
    answers = live.predict([at_clock, behind])
    assert answers[0]["point_in_time"] and answers[0]["withheld_views"] == []
    # behind the store's clock: named from that fact, not from a later value existing
    assert answers[1]["withheld_views"] == ["turbine_recent_scada"]
    assert not answers[1]["point_in_time"]
    assert "unavailable_views" not in answers[0]

    # a view declared without a live path: never served, always reported
    dark = _predictor(store, unavailable=("turbine_recent_scada",))
    looked = dark.lookup([at_clock])[0]
    assert looked["features"]["power_kw"] is None
    assert dark.predict([at_clock])[0]["unavailable_views"] == ["turbine_recent_scada"]
    assert live.lookup([at_clock])[0]["features"]["power_kw"] is not None


def test_run_replays_only_days_without_a_landed_file(tmp_path):
    from pipelines.platform.cli import unlanded_days

    landing = tmp_path / "landing"
    (landing / "scada").mkdir(parents=True)
    (landing / "scada" / "2014-09-02.csv").write_text("corrected\n")
    missing = unlanded_days(WIND, landing, date(2014, 9, 1), date(2014, 9, 3))
    assert missing == [date(2014, 9, 1), date(2014, 9, 3)]
    assert np.all(np.diff([d.toordinal() for d in missing]) > 0)


def test_live_performance_scores_only_labels_known_by_its_instant():
    from pipelines.platform.lib.monitoring import score_live_performance

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "label": rng.integers(0, 2, n).astype(float),
            "label_known_at": pd.Timestamp("2013-01-02T04:00Z")
            + pd.to_timedelta(np.arange(n), unit="min"),
        }
    )
    scores = rng.uniform(size=n)
    spec = load_task("flight_delay").spec
    cut = pd.Timestamp("2013-01-02T04:00Z") + pd.Timedelta(minutes=249)
    result = score_live_performance(spec, frame, scores, 100, cut.isoformat())
    assert (result.status, result.rows, result.pending) == ("ok", 250, 150)
    early = score_live_performance(spec, frame, scores, 100, "2013-01-02T04:30Z")
    assert early.status == "insufficient" and early.pending == 369
    assert "369 pending" in early.reason


def test_a_retrain_cut_at_an_instant_leaves_out_labels_known_later():
    from pipelines.platform.components.model import SplitConfig

    table = pd.DataFrame(
        {
            PARTITION_COLUMN: ["2013-01-01", "2013-01-01", "2013-01-02"],
            "label_known_at": pd.to_datetime(
                ["2013-01-01T20:00Z", "2013-01-02T08:00Z", "2013-01-02T20:00Z"], utc=True
            ),
        }
    )
    # the nightly retrain "until 01-01" at 02:00 New York (07:00Z): the late landing waits
    cut = SplitConfig(until="2013-01-01", cut="2013-01-02T02:00-05:00").window(table)
    assert cut["label_known_at"].tolist() == [pd.Timestamp("2013-01-01T20:00Z")]
    assert len(SplitConfig(until="2013-01-01").window(table)) == 2


@pytest.mark.slow
def test_the_live_skew_check_finds_nothing_on_the_live_path_and_names_a_skewed_column(
    wind_store, tmp_path
):
    from pipelines.platform.lib.prediction_log import PredictionLogWriter, read_day
    from pipelines.platform.lib.skew import live_skew

    store, read = wind_store
    feed = LiveFeed(WIND, store, read)
    t = pd.Timestamp("2014-09-10T14:00Z")
    feed.advance_to(t - pd.Timedelta(hours=2))
    log = PredictionLogWriter(tmp_path / "log")
    predictor = _predictor(store, log=log, store_clock=feed.clock_seconds)
    marks = pd.date_range(t - pd.Timedelta(hours=1), t, freq="10min")
    for at in marks:  # live: each request at its own time
        feed.advance_to(at)
        predictor.predict([{"turbine": "R80711", "predicted_at": at.isoformat()}])
    log.close()
    day = "2014-09-10"
    logged, _ = read_day(tmp_path / "log", day)
    assert len(logged) == len(marks)
    shares, compared = live_skew(store, WIND.spec, WIND.domain, logged)
    assert compared == len(marks) and shares == {}
    # a value that reached the model but not the join (a stale cache, a wrong push) is named
    skewed = logged.copy()
    skewed.loc[:2, "features.power_kw"] = skewed.loc[:2, "features.power_kw"] + 100.0
    shares, _ = live_skew(store, WIND.spec, WIND.domain, skewed)
    assert shares == {"power_kw": pytest.approx(3 / len(marks))}


@pytest.mark.slow
def test_a_feed_over_several_days_writes_nothing_stamped_after_its_bound(wind_store, tmp_path):
    """`push-events --start .. --end .. --until`: the bound holds over the whole range, not
    only its last day."""
    from pipelines.platform.lib.online import read_online

    _, read = wind_store
    store = scratch_store(WIND, read, ["2014-09-10"], tmp_path)
    feed = LiveFeed(WIND, store, read)
    begin = pd.Timestamp("2014-09-09T00:00", tz="Europe/Paris")
    stop = pd.Timestamp("2014-09-10T09:05", tz="Europe/Paris")
    feed.advance_to(begin)
    feed.advance_to(stop)
    from pipelines.tasks.wind_power.source import TURBINES

    _, stamps = read_online(store, WIND.spec.feature_service, {"turbine": list(TURBINES)})
    newest = pd.to_datetime(stamps["turbine_recent_scada"], unit="s", utc=True)
    assert (newest <= stop).all()
    assert (newest == pd.Timestamp("2014-09-10T09:00", tz="Europe/Paris")).all()
