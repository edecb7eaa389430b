"""Model quality on a fixed split, through the platform's own training code on its training set:
train 2013-01-01..2013-10-31 (its last `--valid-days` drive early stopping), test
2013-11-01..2013-12-30 (by default); LightGBM, the torch MLP and the naive baseline: ROC AUC, PR AUC, log loss.

    nice python benchmarks/model_quality.py                      # builds the year once, then trains
    nice python benchmarks/model_quality.py --ablate tail_,_today # also without those features
    nice python benchmarks/model_quality.py --cut   # also with labels cut at the retrain instant
    python benchmarks/model_quality.py --end 2013-01-06 --train-end 2013-01-04 --valid-days 1 \
        --test-start 2013-01-05 --max-epochs 2 --data-root /tmp/q   # the test suite's smoke run
    nice python benchmarks/model_quality.py --tune --budget-s 1200  # tuned vs default per family

--tune searches each family's space (TUNING below, or the task definition's models.tuning) with
Optuna on the same train/valid days (pruning on the validation curve), for at most --budget-s
seconds and --trials trials per family, in a study kept in memory (the benchmark never writes into
the user's data); the best trial is refitted and scored on the test days beside the defaults.
The training set is built by the bare lib pipeline (benchmarks/pipeline_overhead.py) into
--data-root and reused when it is already there.
"""

import argparse
import os
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pipeline_overhead import ensure_training_set
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.evaluation import binary_metrics
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.modeling import dataset as data
from pipelines.platform.lib.modeling.baseline import HistoricalRateBaseline
from pipelines.platform.lib.modeling.lgbm import LgbmParams, train_lgbm
from pipelines.platform.lib.modeling.mlp import MlpParams, train_mlp
from pipelines.platform.lib.settings import DataPaths

TASK = load_task("flight_delay")
SPEC = TASK.spec
# The space searched when the task definition declares none (docs/tuning-and-reproduction.md).
TUNING = {
    "lightgbm": {
        "space": {
            "num_leaves": {"low": 31, "high": 1023, "log": True},
            "learning_rate": {"low": 0.015, "high": 0.1, "log": True},
            "min_data_in_leaf": {"low": 50, "high": 2000, "log": True},
            "feature_fraction": {"low": 0.3, "high": 1.0},
            "bagging_fraction": {"low": 0.5, "high": 1.0},
            "lambda_l2": {"low": 0.01, "high": 100.0, "log": True},
            # Airports and carriers are high-cardinality categoricals: how much their splits are
            # smoothed, and how many rows a category needs to split alone.
            "cat_smooth": {"low": 1.0, "high": 100.0, "log": True},
            "min_data_per_group": {"low": 20, "high": 1000, "log": True},
        },
        "n_trials": 200,
        "metric": "roc_auc",
        "startup_trials": 8,
    },
    "torch": {
        "space": {
            "hidden": {"choices": [[128, 64], [256, 128], [512, 256], [256, 128, 64]]},
            "dropout": {"low": 0.0, "high": 0.4},
            "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
            "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
            "batch_size": {"choices": [512, 1024, 2048]},
        },
        "n_trials": 100,
        "metric": "roc_auc",
        "startup_trials": 4,
    },
}
START, TRAIN_END, TEST_START, END = "2013-01-01", "2013-10-31", "2013-11-01", "2013-12-30"


def training_table(paths: DataPaths, start: str, end: str) -> pd.DataFrame:
    days = ensure_training_set(paths, date.fromisoformat(start), date.fromisoformat(end))
    return Lake(paths.lake).read_partitions("flight_delay/training_set", days)


def retrain_instant(args: argparse.Namespace) -> pd.Timestamp:
    """The nightly retrain after the last training day: 02:00 New York the next morning."""
    day = pd.Timestamp(args.train_end) + pd.Timedelta(days=1, hours=2)
    return day.tz_localize("America/New_York").tz_convert("UTC")


def evaluate(table: pd.DataFrame, spec, args: argparse.Namespace, families: list[str]) -> dict:
    day = table["partition_date"].astype(str)
    valid_start = (pd.Timestamp(args.train_end) - pd.Timedelta(days=args.valid_days - 1)).strftime(
        "%Y-%m-%d"
    )
    known = table.index == table.index
    if args.cut:  # labels known only after the retrain instant wait (issue 24)
        from pipelines.platform.lib.labels import known_by

        known = known_by(table, retrain_instant(args))
    train = table[(day < valid_start) & known]
    valid = table[(day >= valid_start) & (day <= args.train_end) & known]
    test = table[day >= args.test_start]
    xs = {n: data.feature_frame(f, spec) for n, f in (("train", train), ("valid", valid))}
    ys = {n: data.labels(f, spec) for n, f in (("train", train), ("valid", valid))}
    test_x, test_y = data.feature_frame(test, spec), data.labels(test, spec)
    categorical = list(spec.categorical_features)
    results = {}
    for family in families:
        started = time.perf_counter()
        if family == "baseline":
            model = HistoricalRateBaseline(list(spec.baseline_keys))
            model.fit(pd.concat([train, valid]), ys["train"].tolist() + ys["valid"].tolist())
            p = model.predict_proba(test)
        else:
            fit = train_lgbm if family == "lightgbm" else train_mlp
            params = _default_params(family, args)
            trained = fit(
                xs["train"], ys["train"], xs["valid"], ys["valid"], categorical, params
            ).model
            p = trained.predict_proba(test_x)
        results[family] = binary_metrics(test_y, p) | {"seconds": time.perf_counter() - started}
        if args.tune and family != "baseline":
            started = time.perf_counter()
            tuned, summary = _tune(
                family, (xs["train"], ys["train"], xs["valid"], ys["valid"], categorical), args
            )
            p = tuned.predict_proba(test_x)
            results[f"{family} tuned"] = (
                binary_metrics(test_y, p) | {"seconds": time.perf_counter() - started} | summary
            )
    return {"rows": (len(train), len(valid), len(test)), "metrics": results}


def _default_params(family: str, args: argparse.Namespace):
    if family == "lightgbm":
        return LgbmParams()
    return MlpParams(**({"max_epochs": args.max_epochs} if args.max_epochs else {}))


def _tune(family: str, train_args: tuple, args: argparse.Namespace):
    """Search within the budget, then refit the best trial (as the family asset does)."""
    import optuna

    from pipelines.platform.lib.modeling.families import family as lookup
    from pipelines.platform.lib.tuning import parse_search, tune

    fam = lookup(family)
    doc = TASK.definition.models.tuning.get(family) or TUNING[family]
    doc = {**doc, "timeout_s": args.budget_s, "n_trials": args.trials or doc.get("n_trials")}
    spec = parse_search(fam, doc, f"models.tuning.{family}")
    base = {k: v for k, v in _default_params(family, args).__dict__.items()}
    result = tune(
        fam,
        spec,
        train_args,
        base,
        storage=optuna.storages.InMemoryStorage(),
        study_name=f"bench-{family}",
        seed=7,
        log=lambda message: print(f"    {family} {message}", flush=True),
    )
    params = fam.make_params({**base, **result.best_params})
    trained = fam.train_fn()(*train_args, params).model
    return trained, {
        "trials": result.trials,
        "tuning_seconds": result.seconds,
        "best": result.best_params,
        "best_valid": result.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default="/tmp/flightline-bench-quality")
    parser.add_argument("--start", default=START)
    parser.add_argument("--train-end", default=TRAIN_END, help="last day of train + valid")
    parser.add_argument("--test-start", default=TEST_START)
    parser.add_argument("--end", default=END)
    parser.add_argument("--valid-days", type=int, default=31)
    parser.add_argument("--max-epochs", type=int, help="torch (default: the family's own)")
    parser.add_argument("--families", default="lightgbm,torch,baseline")
    parser.add_argument(
        "--cut",
        action="store_true",
        help="also train with only the labels known at the retrain instant (02:00 New York "
        "after --train-end): the AUC change against all labels of the days",
    )
    parser.add_argument(
        "--ablate", default="", help="comma-separated substrings: also train without them"
    )
    parser.add_argument("--tune", action="store_true", help="also tune each family (Optuna)")
    parser.add_argument(
        "--budget-s", type=float, default=1200, help="tuning time per family (default 20 min)"
    )
    parser.add_argument("--trials", type=int, help="at most this many trials per family")
    args = parser.parse_args()
    os.environ["FLIGHTLINE_DATA_ROOT"] = str(Path(args.data_root) / "data")
    table = training_table(DataPaths.from_env(), args.start, args.end)
    families = args.families.split(",")
    runs = {"all features": SPEC}
    for part in filter(None, args.ablate.split(",")):
        kept = tuple(c for c in SPEC.numeric_features if part not in c)
        runs[f"without *{part}*"] = replace(SPEC, numeric_features=kept)
    cut = args.cut
    for name, spec in runs.items():
        args.cut = False
        report = evaluate(table, spec, args, families if name == "all features" else ["lightgbm"])
        train, valid, test = report["rows"]
        print(
            f"{name}: {len(spec.features)} features; train {train:,} / valid {valid:,} / test {test:,}"
        )
        for family, m in report["metrics"].items():
            print(
                f"  {family:<9} ROC AUC {m['roc_auc']:.4f}  PR AUC {m['pr_auc']:.4f}  "
                f"log loss {m['log_loss']:.4f}  ({m['seconds']:.0f}s)",
                flush=True,
            )
            if "trials" in m:
                print(
                    f"            tuning: {m['tuning_seconds']:.0f}s, trials {m['trials']}, best "
                    f"valid ROC AUC {m['best_valid']:.4f} with {m['best']}",
                    flush=True,
                )
    if cut:
        args.cut, args.tune = True, False  # the cut compares defaults: no second search
        report = evaluate(table, SPEC, args, [f for f in families if f != "baseline"])
        train, valid, _ = report["rows"]
        print(f"labels cut at {retrain_instant(args)}: train {train:,} / valid {valid:,}")
        for family, m in report["metrics"].items():
            print(f"  {family:<9} ROC AUC {m['roc_auc']:.4f}  log loss {m['log_loss']:.4f}")


if __name__ == "__main__":
    main()
