"""The model half on the whole year: the lgbm_model asset versus a bare `lightgbm.train` on the
same matrix (ratio, target <= 1.1), PyTorch training throughput (rows/s, with the device), and
model quality (AUC, PR AUC) of both families and the naive baseline on the same holdout.

    python benchmarks/model_training.py                        # 2013-01-01..2013-12-30
    python benchmarks/model_training.py --end 2013-03-31 --data-root /tmp/bench-q1
    python benchmarks/model_training.py --end 2013-01-06 --validation-days 1 --holdout-days 2 \
        --max-epochs 2 --bootstrap-samples 50                     # the test suite's smoke run
The training set is built once by the bare lib pipeline (kept with --data-root for re-runs).
"""

import os
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import lightgbm as lgb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import median, window_parser
from benchmarks.pipeline_overhead import ensure_training_set
from pipelines.definitions import defs
from pipelines.platform.components.task import load_task
from pipelines.platform.lib.lake import Lake
from pipelines.platform.lib.modeling import dataset as data
from pipelines.platform.lib.modeling.lgbm import LgbmClassifier, LgbmParams
from pipelines.platform.lib.settings import DataPaths
from pipelines.platform.lib.task import TimeSplit
from pipelines.platform.resources_config import embedded_resources

TASK = "flight_delay"
SPEC = load_task(TASK).spec


def bare_lightgbm(
    table: pd.DataFrame, split: TimeSplit, rounds: int | None = None
) -> tuple[float, int]:
    """What the asset's training does, minus Dagster and MLflow: split, encode, train.
    `rounds`: exactly that many boosting rounds, without early stopping (the scale benchmark:
    on years copied from 2013 the validation day repeats training days, and early stopping
    would measure how long that takes to overfit, not how cost grows)."""
    started = time.perf_counter()
    frames = data.time_split(table, SPEC, split)
    train_x, valid_x = (
        data.feature_frame(frames.train, SPEC),
        data.feature_frame(frames.valid, SPEC),
    )
    categories = {
        c: sorted(train_x[c].dropna().unique().tolist()) for c in SPEC.categorical_features
    }
    encode = LgbmClassifier(None, categories, list(train_x.columns)).matrix  # type: ignore[arg-type]
    params = LgbmParams()
    train_set = lgb.Dataset(encode(train_x), label=data.labels(frames.train, SPEC))
    valid_set = lgb.Dataset(
        encode(valid_x), label=data.labels(frames.valid, SPEC), reference=train_set
    )
    booster = lgb.train(
        params.booster_params(),
        train_set,
        num_boost_round=rounds or params.max_rounds,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[]
        if rounds
        else [
            lgb.early_stopping(params.early_stopping_rounds, first_metric_only=True, verbose=False)
        ],
    )
    return time.perf_counter() - started, rounds or booster.best_iteration


def run_config(split: TimeSplit, max_epochs: int | None, bootstrap_samples: int | None) -> dict:
    """The same split for both model families and the evaluation (the task's own by default)."""
    common = {"validation_days": split.validation_days, "holdout_days": split.holdout_days}
    extra = {
        "torch_model": {"max_epochs": max_epochs} if max_epochs else {},
        "model_evaluation": {"bootstrap_samples": bootstrap_samples} if bootstrap_samples else {},
    }
    return {
        "ops": {
            f"{TASK}__{asset}": {"config": common | extra.get(asset, {})}
            for asset in ("lgbm_model", "torch_model", "model_evaluation")
        }
    }


def materialize(selection: list[str], instance, config: dict) -> dg.ExecuteInProcessResult:
    definitions = defs()
    keys = [dg.AssetKey([TASK, name]) for name in selection]
    job = dg.define_asset_job("bench", selection=dg.AssetSelection.assets(*keys))
    job_def = dg.Definitions(
        assets=list(definitions.assets or []),
        asset_checks=list(definitions.asset_checks or []),
        jobs=[job],
        resources=definitions.resources,
    ).resolve_job_def("bench")
    ops = {node: c for node, c in config["ops"].items() if node.split("__")[-1] in selection}
    return job_def.execute_in_process(
        instance=instance, run_config={"ops": ops}, raise_on_error=False
    )


def main() -> None:
    parser = window_parser(__doc__)
    parser.add_argument("--data-root", default=None, help="keep the built data here for re-runs")
    parser.add_argument("--validation-days", type=int, default=SPEC.split.validation_days)
    parser.add_argument("--holdout-days", type=int, default=SPEC.split.holdout_days)
    parser.add_argument("--max-epochs", type=int, help="torch (default: the family's own)")
    parser.add_argument("--bootstrap-samples", type=int, help="evaluation (default: its own)")
    args = parser.parse_args()
    split = TimeSplit(args.validation_days, args.holdout_days)
    config = run_config(split, args.max_epochs, args.bootstrap_samples)
    root = Path(args.data_root or f"/tmp/flightline-bench-models-{args.start}-{args.end}")
    os.environ["FLIGHTLINE_DATA_ROOT"] = str(root / "data")
    paths = DataPaths.from_env()
    days = ensure_training_set(paths, date.fromisoformat(args.start), date.fromisoformat(args.end))
    table = Lake(paths.lake).read_partitions("flight_delay/training_set", days)
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)

    bare, bare_read, asset = [], [], []
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        embedded_resources()["mlflow"].registry().check_reachable()  # MLflow's schema setup: once
        for i in range(args.repeat):
            started = time.perf_counter()
            fresh = Lake(paths.lake).read_partitions("flight_delay/training_set", days)
            read_seconds = time.perf_counter() - started
            seconds, best = bare_lightgbm(fresh, split)
            bare.append(seconds)
            bare_read.append(read_seconds + seconds)
            started = time.perf_counter()
            result = materialize(["lgbm_model"], instance, config)
            asset.append(time.perf_counter() - started)
            assert result.success, "lgbm_model failed"
            print(
                f"run {i + 1}: bare lightgbm.train {bare[-1]:.1f}s (best iteration {best}), lgbm_model asset {asset[-1]:.1f}s",
                flush=True,
            )
        started = time.perf_counter()
        result = materialize(["torch_model", "model_evaluation", "champion"], instance, config)
        assert result.success, "torch_model, model_evaluation or champion failed"
        print(
            f"torch_model + model_evaluation + champion: {time.perf_counter() - started:.0f}s",
            flush=True,
        )
        torch_ref = result.output_for_node(f"{TASK}__torch_model")
        report = result.output_for_node(f"{TASK}__model_evaluation")

    summary = torch_ref["summary"]
    print(f"\n{len(days)} days, {len(table):,} training-set rows, medians of {args.repeat} run(s):")
    b, a = median(bare), median(asset)
    print(f"  bare lightgbm.train (split + encode + train): {b:7.1f} s")
    print(f"  lgbm_model asset (+ IO manager, MLflow log/register): {a:7.1f} s")
    r = median(bare_read)
    print(f"  bare script that also reads the table from the lake:  {r:7.1f} s")
    print(f"  ratio asset / bare train: {a / b:.3f}   asset / bare read + train: {a / r:.3f}")
    print(
        f"  torch MLP: {summary['rows_per_second']:,.0f} rows/s on {summary['device_name']} "
        f"({summary['epochs']} epochs of {summary['train_rows']:,} rows in {summary['train_seconds']:.1f}s, "
        f"precision {summary['mixed_precision']})"
    )
    holdout = report["holdout"]
    print(
        f"  holdout {holdout['start'][:10]}..{holdout['last'][:10]}: {holdout['rows']:,} flights, {holdout['positives']:,} delayed"
    )
    for name, m in report["metrics"].items():
        print(
            f"    {name:<10} ROC AUC {m['roc_auc']:.4f}  PR AUC {m['pr_auc']:.4f}  log loss {m['log_loss']:.4f}  ECE {m['ece']:.4f}"
        )


if __name__ == "__main__":
    main()
