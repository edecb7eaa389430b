"""Exact reproduction of a model version: the record a training writes (data partitions by
content hash, code, lockfile, image, seeds, parameters) and the rebuild that reads it back,
refits the model and compares its holdout predictions with the registered model's."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from typing import TYPE_CHECKING, Any

from pipelines.platform.lib.lake import PARTITION_COLUMN
from pipelines.platform.lib.settings import PROJECT_ROOT
from pipelines.platform.lib.task import TaskSpec, TimeSplit

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.platform.lib.lake import Lake
    from pipelines.platform.lib.tracking import ModelRegistry

RECORD_ARTIFACT = "reproduce/record.json"
WHOLE_TABLE = "*"  # the partition key of an unpartitioned training table
# The MLP refit on CPU with deterministic kernels and the same thread count gives the same
# weights; the stated bound leaves room for a different BLAS thread split.
TOLERANCE = {"lightgbm": 0.0, "torch": 1e-6}
IMAGE_DIGEST_ENV = "FLIGHTLINE_IMAGE_DIGEST"  # set on the cluster's pods by the deployment


class ReproductionRefused(RuntimeError):
    """A recorded input is gone or changed; the message names it."""


def content_hash(frame: pd.DataFrame) -> str:
    """Of the rows and columns as read (not the file's bytes): a rewrite of the same data keeps
    its hash, one changed value does not."""
    import pandas as pd

    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(json.dumps([str(t) for t in frame.dtypes]).encode())
    digest.update(
        pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy().tobytes()
    )
    return digest.hexdigest()


def partition_hashes(table: pd.DataFrame) -> dict[str, str]:
    """Partition (day) -> content hash of its rows; one entry for an unpartitioned table."""
    if PARTITION_COLUMN not in table.columns:
        return {WHOLE_TABLE: content_hash(table)}
    days = table[PARTITION_COLUMN].astype(str)
    return {day: content_hash(table.loc[days == day]) for day in sorted(days.unique())}


def lockfile_hash() -> str | None:
    path = PROJECT_ROOT / "uv.lock"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def code_state(version: str) -> dict:
    """`code_version()` ("<commit>[-dirty]" or the image's FLIGHTLINE_CODE_VERSION) split up."""
    return {
        "version": version,
        "commit": version.removesuffix("-dirty"),
        "dirty": version.endswith("-dirty"),
    }


def build_record(
    spec: TaskSpec,
    family: str,
    window: pd.DataFrame,
    *,
    until: str | None,
    split: TimeSplit,
    params: dict[str, Any],
    code_version: str,
    tuning: dict | None = None,
) -> dict:
    """What rebuilds a model version, as one JSON document (an MLflow artifact of its run)."""
    packages = ["lightgbm", "torch", "numpy", "pandas", "scikit-learn", "pyarrow"]
    return {
        "task": spec.name,
        "family": family,
        "data": {
            "table": "/".join(spec.training_asset),
            "until": until,
            "rows": len(window),
            "partitions": partition_hashes(window),
        },
        "split": {"validation_days": split.validation_days, "holdout_days": split.holdout_days},
        "params": params,
        "seeds": {k: v for k, v in params.items() if "seed" in k},
        "code": code_state(code_version),
        "lockfile_sha256": lockfile_hash(),
        "image_digest": os.environ.get(IMAGE_DIGEST_ENV) or None,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            **{p: _installed(p) for p in packages},
        },
        "tuning": tuning,
    }


def record_tags(record: dict) -> dict[str, str]:
    """The record's headline as model-version tags (searchable in MLflow)."""
    hashes = record["data"]["partitions"]
    overall = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    return {
        "data.version": overall[:16],
        "data.partition_count": str(len(hashes)),
        "code.commit": record["code"]["commit"],
        "code.dirty": str(record["code"]["dirty"]).lower(),
        "lockfile.sha256": (record["lockfile_sha256"] or "")[:16],
        "image.digest": record["image_digest"] or "",
    }


def _installed(package: str) -> str | None:
    try:
        return installed_version(package)
    except Exception:
        return None


@dataclass
class Reproduction:
    task: str
    version: str
    family: str
    rows: int
    max_abs_difference: float
    tolerance: float
    baselines: dict[str, dict] = field(default_factory=dict)  # label -> recorded/rebuilt AUC
    notes: list[str] = field(default_factory=list)  # differences that do not refuse (code, lock)

    @property
    def identical(self) -> bool:
        return self.max_abs_difference <= self.tolerance and all(
            b["recorded"] == b["rebuilt"] for b in self.baselines.values()
        )

    def lines(self) -> list[str]:
        out = [
            f"{self.task} v{self.version} ({self.family}): rebuilt from its record; "
            f"{self.rows:,} holdout rows, max |difference| {self.max_abs_difference:.3g} "
            f"(tolerance {self.tolerance:g}): {'REPRODUCED' if self.identical else 'DIFFERENT'}"
        ]
        for label, b in self.baselines.items():
            same = "same" if b["recorded"] == b["rebuilt"] else "DIFFERENT"
            out.append(
                f"  {label}: holdout ROC AUC {b['rebuilt']!r} vs recorded {b['recorded']!r} ({same})"
            )
        out += [f"  note: {n}" for n in self.notes]
        return out


def read_record(registry: ModelRegistry, name: str, version: str) -> tuple[dict, Any]:
    from mlflow.exceptions import MlflowException

    try:
        mv = registry.client.get_model_version(name, version)
    except MlflowException as exc:
        raise ReproductionRefused(
            f"{name} v{version} is not a registered version: {exc.message}"
        ) from None
    try:
        text = registry.read_artifact(mv.run_id, RECORD_ARTIFACT)
    except (OSError, MlflowException):
        raise ReproductionRefused(
            f"{name} v{version} has no reproduction record ({RECORD_ARTIFACT} in run {mv.run_id}): "
            "it was trained before records were written"
        ) from None
    return json.loads(text), mv


def recorded_data(record: dict, lake: Lake) -> pd.DataFrame:
    """The training table as the version read it, checked partition by partition against the
    recorded content hashes; refuses, naming the partition, when one is gone or changed."""
    import pandas as pd

    table, hashes = record["data"]["table"], record["data"]["partitions"]
    stored = set(lake.partitions(table))
    if WHOLE_TABLE in hashes:
        if not lake.exists(table):
            raise ReproductionRefused(f"input {table} is gone from the lake ({lake.root})")
        frame = lake.read(table)
    else:
        missing = sorted(set(hashes) - stored)
        if missing and not lake.exists(table):
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ReproductionRefused(
                f"input {table}: {len(missing)} recorded partition(s) are gone from the lake: {shown}"
            )
        frame = (
            lake.read_partitions(table, sorted(hashes))
            if not missing
            else lake.read(table)  # an unpartitioned table with a partition column
        )
    until = record["data"].get("until")
    if until is not None and PARTITION_COLUMN in frame.columns:
        frame = frame.loc[frame[PARTITION_COLUMN].astype(str) <= until].reset_index(drop=True)
    now = partition_hashes(frame)
    gone = sorted(set(hashes) - set(now))
    if gone:
        raise ReproductionRefused(f"input {table}: recorded partitions {gone[:5]} are gone")
    changed = [p for p in sorted(hashes) if now[p] != hashes[p]]
    if changed:
        raise ReproductionRefused(
            f"input {table}: partition(s) {changed[:5]} changed since the training "
            f"(content hash {hashes[changed[0]][:12]} recorded, {now[changed[0]][:12]} now)"
        )
    extra = sorted(set(now) - set(hashes))
    if extra:  # days landed after the training inside its window: not the data it read
        keep = set(hashes)
        frame = frame.loc[frame[PARTITION_COLUMN].astype(str).isin(keep)].reset_index(drop=True)
    return pd.DataFrame(frame)


def reproduce(spec: TaskSpec, registry: ModelRegistry, lake: Lake, version: str) -> Reproduction:
    """Rebuild `version` of the task's model from its record and compare holdout predictions
    with the registered model (and the baselines' holdout AUC with its evaluation report)."""
    import numpy as np

    from pipelines.platform.lib.evaluation import binary_metrics
    from pipelines.platform.lib.modeling.baseline import fit_baseline
    from pipelines.platform.lib.modeling.dataset import feature_frame, labels
    from pipelines.platform.lib.modeling.fit import fit, prepare
    from pipelines.platform.lib.tracking import code_version

    record, mv = read_record(registry, spec.registered_model, version)
    table = recorded_data(record, lake)
    split = TimeSplit(**record["split"])
    prepared = prepare(spec, table, split, record["params"].get("label_permutation_seed"))
    result, _ = fit(record["family"], prepared, record["params"])
    holdout = prepared.frames.holdout
    if holdout.empty:
        raise ReproductionRefused(
            f"{spec.name} v{version}: the recorded window has no holdout days"
        )
    holdout_x = feature_frame(holdout, spec)
    registered = np.asarray(
        registry.load(f"models:/{spec.registered_model}/{version}").predict(holdout_x),
        dtype="float64",
    )
    rebuilt = np.asarray(result.model.predict_proba(holdout_x), dtype="float64")
    out = Reproduction(
        task=spec.name,
        version=str(version),
        family=record["family"],
        rows=len(holdout),
        max_abs_difference=float(np.max(np.abs(registered - rebuilt))),
        tolerance=TOLERANCE.get(record["family"], 0.0),
    )
    report = _evaluation_report(registry, mv.run_id)
    if report is not None and report["holdout"]["rows"] != len(holdout):
        out.notes.append("its evaluation used another holdout: baselines not compared")
    elif report is not None:
        import pandas as pd

        seen = pd.concat([prepared.frames.train, prepared.frames.valid], ignore_index=True)
        y = labels(holdout, spec)
        for declared in spec.declared_baselines():
            recorded = report["metrics"].get(declared.label, {}).get("roc_auc")
            if recorded is None:
                continue
            scores = fit_baseline(
                declared, feature_frame(seen, spec), labels(seen, spec)
            ).predict_proba(holdout_x)
            out.baselines[declared.label] = {
                "recorded": recorded,
                "rebuilt": binary_metrics(y, scores)["roc_auc"],
            }
    current = code_state(code_version())
    if current["commit"] != record["code"]["commit"] or record["code"]["dirty"]:
        out.notes.append(
            f"trained by code {record['code']['version']}, rebuilt by {current['version']}"
        )
    if record["lockfile_sha256"] != lockfile_hash():
        out.notes.append("uv.lock differs from the one it was trained with")
    if record.get("image_digest"):
        out.notes.append(f"trained in image {record['image_digest']}")
    return out


def _evaluation_report(registry: ModelRegistry, run_id: str) -> dict | None:
    from mlflow.exceptions import MlflowException

    try:
        return json.loads(registry.read_artifact(run_id, "evaluation/report.json"))
    except (OSError, MlflowException):  # never evaluated: no report, nothing to compare
        return None
