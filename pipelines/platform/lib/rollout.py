"""Staged rollout of a challenger on live evidence, as plain logic: which model answers an
entity during canary (a stable hash, so one entity always sees one model), and how the live
gate's verdict moves a rollout through shadow -> canary -> champion, or back."""

import hashlib
from dataclasses import asdict, dataclass

STAGES = ("shadow", "canary", "champion", "rollback")
TERMINAL = ("champion", "rollback")


def canary_bucket(entity: str, salt: str) -> float:
    """The entity's place in [0, 1): sha256 of salt and key, so that it is the same in every
    process and every restart (Python's hash() is salted per process), and independent across
    rollouts (the salt is the challenger's version)."""
    digest = hashlib.sha256(f"{salt}\x00{entity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def answers_with_challenger(entity: str, salt: str, share: float) -> bool:
    """During canary: this entity's requests are answered by the challenger."""
    return canary_bucket(entity, salt) < share


@dataclass(frozen=True)
class RolloutState:
    """What the rollout asset records in each materialization (and MLflow tags mirror)."""

    stage: str
    challenger_version: str
    champion_version: str
    canary_share: float
    decision: str  # why it is in this stage

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown rollout stage {self.stage!r}; stages: {', '.join(STAGES)}")

    def as_dict(self) -> dict:
        return asdict(self)


def advance(state: RolloutState, verdict: str, reasons: list[str], evidence: str) -> RolloutState:
    """The next state after a live-gate verdict ("wait", "advance", "rollback"): shadow advances to
    canary, canary to champion; a rollback from either ends it; a terminal state does not move."""
    if state.stage in TERMINAL or verdict == "wait":
        return state
    if verdict == "rollback":
        why = "; ".join(reasons) or "the live gate failed"
        return _with(state, "rollback", f"rolled back during {state.stage}: {why} ({evidence})")
    if verdict != "advance":
        raise ValueError(f"unknown live-gate verdict {verdict!r}")
    nxt = "canary" if state.stage == "shadow" else "champion"
    return _with(state, nxt, f"live gate passed in {state.stage} ({evidence})")


def manual(state: RolloutState, action: str, who: str, why: str) -> RolloutState:
    """A human's promote (one stage forward) or abort (rollback), recorded with who and why."""
    if state.stage in TERMINAL:
        raise ValueError(f"the rollout of v{state.challenger_version} is over ({state.stage})")
    if action == "abort":
        return _with(state, "rollback", f"aborted by {who}: {why}")
    if action == "promote":
        nxt = "canary" if state.stage == "shadow" else "champion"
        return _with(state, nxt, f"promoted by {who}: {why}")
    raise ValueError(f"unknown action {action!r}: promote or abort")


def superseded(state: RolloutState, by: str) -> RolloutState:
    """A rollout still in progress when a newer challenger passes the offline gate ends."""
    return _with(state, "rollback", f"superseded by v{by} during {state.stage}")


# What `live_ab_analysis` keeps per labelled live request (and the slice columns of the task).
EVIDENCE_COLUMNS = (
    "stage",
    "challenger_version",
    "champion_version",
    "served_by",
    "champion_score",
    "challenger_score",
    "label",
)


def request_keys(requests, examples, timestamp: str) -> list[str]:
    """The columns that match a logged request to its example: the prediction time and every
    other request column the examples table holds that is not a float (a float is a measured
    value, not an identity: `distance`)."""
    import pandas as pd

    keys = [timestamp] if timestamp in requests.columns and timestamp in examples.columns else []
    for column in requests.columns:
        if column in keys or column not in examples.columns:
            continue
        if pd.api.types.is_float_dtype(requests[column]) or pd.api.types.is_float_dtype(
            examples[column]
        ):
            continue
        keys.append(column)
    if not keys:
        raise ValueError("no request column identifies an example: cannot label the live log")
    return keys


def labelled_live_rows(log, examples, spec, domain, as_of):
    """The rollout's live evidence: each logged live request with both models' scores, who
    answered, and its label if it was known by `as_of` (else NaN: pending). Requests are matched
    to the examples table on `request_keys`; a request matching no example, or several, stays
    unlabelled."""
    import numpy as np
    import pandas as pd

    from pipelines.platform.lib.labels import LABEL_KNOWN_AT, known_by
    from pipelines.platform.lib.skew import served_requests

    if log.empty:
        return pd.DataFrame(columns=["champion_score", "challenger_score", "label"])
    raw, _ = served_requests(log)
    requests = domain.request_frame(raw).reset_index(drop=True)
    stamp = spec.timestamp_column
    # One resolution on both sides: merge refuses datetime keys of different units.
    requests[stamp] = pd.to_datetime(requests[stamp], utc=True).astype("datetime64[ns, UTC]")
    examples = examples.copy()
    examples[stamp] = pd.to_datetime(examples[stamp], utc=True).astype("datetime64[ns, UTC]")
    keys = request_keys(requests, examples, stamp)
    extra = [c for c in (*spec.slice_columns, LABEL_KNOWN_AT) if c in examples.columns]
    extra = [c for c in extra if c not in keys]
    unique = examples.drop_duplicates(keys, keep=False)[[*keys, spec.label_column, *extra]]
    joined = requests[keys].merge(unique, on=keys, how="left", validate="many_to_one")
    label = joined[spec.label_column].astype("float64")
    if len(joined) and LABEL_KNOWN_AT in joined.columns:
        label = label.where(known_by(joined, as_of), np.nan)
    columns = ["champion_score", "challenger_score", "served_by", "challenger_version"]
    evidence = log.reset_index(drop=True)[[c for c in columns if c in log.columns]].copy()
    evidence["label"] = label.to_numpy()
    for column in spec.slice_columns:
        if column in joined.columns:
            evidence[column] = joined[column].to_numpy()
        elif column in requests.columns:
            evidence[column] = requests[column].to_numpy()
    return evidence


def _with(state: RolloutState, stage: str, decision: str) -> RolloutState:
    return RolloutState(
        stage, state.challenger_version, state.champion_version, state.canary_share, decision
    )


def live_ab_analysis(frame, label: str, models: list[str], samples: int = 500, seed: int = 0):
    """Champion and challenger compared on the same labelled live rows: AUC, log loss, ECE and the
    mean score, each with a percentile bootstrap interval (the same resamples for every model),
    and the score distribution's quartiles. One row per model."""
    import numpy as np
    import pandas as pd

    from pipelines.platform.lib.evaluation import binary_metrics

    known = frame.dropna(subset=[label, *models]).reset_index(drop=True)
    y = known[label].to_numpy(dtype="float64")
    if len(known) == 0 or not 0 < y.sum() < len(y):
        raise ValueError(
            f"{len(known)} labelled rows with both classes needed for a comparison "
            f"({int(y.sum()) if len(y) else 0} positives)"
        )
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, len(y), len(y)) for _ in range(samples)]
    picks = [p for p in picks if 0 < y[p].sum() < len(p)]
    rows = []
    for model in models:
        p = known[model].to_numpy(dtype="float64")
        point = binary_metrics(y, p)
        draws = pd.DataFrame([binary_metrics(y[i], p[i]) for i in picks])
        row = {"model": model, "rows": len(y), "positive_rate": float(y.mean())}
        for metric in ("roc_auc", "log_loss", "ece"):
            row[metric] = point[metric]
            row[f"{metric}_low"] = float(draws[metric].quantile(0.025))
            row[f"{metric}_high"] = float(draws[metric].quantile(0.975))
        means = np.array([p[i].mean() for i in picks])
        row |= {
            "mean_score": float(p.mean()),
            "mean_score_low": float(np.quantile(means, 0.025)),
            "mean_score_high": float(np.quantile(means, 0.975)),
            **{f"score_p{q}": float(np.quantile(p, q / 100)) for q in (10, 25, 50, 75, 90)},
        }
        rows.append(row)
    return pd.DataFrame(rows)
