"""Is there enough data for the gate to see a gain? From an evaluation report: labelled rows per
split, the smallest AUC gain the holdout can detect at the gate's confidence, and, when the
candidate did not clear its reference, how long a holdout would make that margin detectable.

The detectable gain is the half-width of the gate's own paired bootstrap interval (the gain at
which the interval's lower bound clears zero). It shrinks as 1/sqrt(holdout rows), so a holdout
k times longer detects a gain sqrt(k) times smaller: that is how the days are estimated
(assuming later days look like these)."""

import math


def detectable_gain(interval: dict) -> float:
    """Half the width of the paired bootstrap interval of AUC(candidate) - AUC(reference)."""
    return (interval["high"] - interval["low"]) / 2


def holdout_days_for(margin: float, detectable: float, holdout_days: int) -> int | None:
    """Holdout days at which a margin of `margin` AUC becomes detectable (None: no margin)."""
    if margin <= 0 or detectable <= 0:
        return None
    return max(holdout_days, math.ceil(holdout_days * (detectable / margin) ** 2))


def assess(report: dict, holdout_days: int) -> dict:
    """The evaluation report's data sufficiency (plain numbers, for metadata and the summary)."""
    interval = report["auc_difference"]
    detectable = detectable_gain(interval)
    candidate = report["candidate"]["family"]
    reference = report["reference"]
    gain = report["metrics"][candidate]["roc_auc"] - report["metrics"][reference]["roc_auc"]
    out = {
        "labelled_rows": {
            name: {"rows": split["rows"], "positives": split["positives"]}
            for name, split in report["split"].items()
        },
        "detectable_auc_gain": round(detectable, 4),
        "confidence": interval["confidence"],
        "holdout_days": holdout_days,
        "candidate": candidate,
        "reference": reference,
        "auc_gain": round(gain, 4),
    }
    if interval["low"] <= 0:  # the gate cannot tell the candidate from its reference
        needed = holdout_days_for(abs(gain), detectable, holdout_days)
        out["holdout_days_to_detect"] = needed
        out["more_days"] = None if needed is None else needed - holdout_days
    return out


def summary_lines(sufficiency: dict) -> list[str]:
    """Two lines for the run's summary: the data, and (when the interval straddles zero) what
    would settle it."""
    rows = sufficiency["labelled_rows"]
    split = ", ".join(
        f"{name} {r['rows']:,} ({r['positives']:,} positive)" for name, r in rows.items()
    )
    lines = [
        f"labelled rows: {split}; the {sufficiency['holdout_days']}-day holdout detects an AUC "
        f"gain of {sufficiency['detectable_auc_gain']:.3f} or more at "
        f"{sufficiency['confidence']:.0%}"
    ]
    if "holdout_days_to_detect" in sufficiency:
        winner, loser = (
            (sufficiency["reference"], sufficiency["candidate"])
            if sufficiency["auc_gain"] < 0
            else (sufficiency["candidate"], sufficiency["reference"])
        )
        margin = abs(sufficiency["auc_gain"])
        needed = sufficiency["holdout_days_to_detect"]
        lines.append(
            f"{winner} led {loser} by {margin:.3f} AUC, under what the holdout can detect"
            + (
                f"; about {needed} holdout days ({sufficiency['more_days']} more: raise "
                f"split.holdout_days and lengthen run_window) would make it detectable"
                if needed
                else ""
            )
        )
    return lines
