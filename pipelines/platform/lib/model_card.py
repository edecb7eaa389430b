"""Model cards: what a reviewer reads about a registered version before it serves, written when
the version is evaluated (Markdown, and the same rendered as HTML for the MLflow UI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.platform.lib.evaluation import paired_bootstrap_auc_difference
from pipelines.platform.lib.reproduce import WHOLE_TABLE
from pipelines.platform.lib.task import TaskSpec

if TYPE_CHECKING:
    import numpy as np

CARD_MD, CARD_HTML = "model_card/model_card.md", "model_card/model_card.html"
METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")


def comparisons(
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    family: str,
    references: list[str],
    samples: int,
    seed: int = 0,
) -> dict[str, dict]:
    """Holdout AUC of `family` minus each reference's (baselines, champion), with its paired
    bootstrap interval."""
    out = {}
    for ref in references:
        if ref == family or ref not in predictions:
            continue
        interval = paired_bootstrap_auc_difference(
            y, predictions[family], predictions[ref], samples, seed=seed
        )
        out[ref] = interval.__dict__
    return out


def build_card(
    spec: TaskSpec,
    challenger: dict,
    report: dict,
    versus: dict[str, dict],
    calibration: dict,
    record: dict | None,
) -> str:
    """The card of one challenger of an evaluation `report` (lib/review.py)."""
    family, version = challenger["family"], challenger["version"]
    metrics = report["metrics"]
    candidate = report["candidate"]
    lines = [
        f"# Model card: {spec.name} v{version} ({family})",
        "",
        f"**Status at evaluation**: {'candidate for promotion' if candidate['version'] == version else 'challenger (not the candidate)'}"
        f"; MLflow run `{challenger['run_id']}`.",
        "",
        "## Task",
        "",
        spec.description.strip() or f"Task `{spec.name}` (no description in its definition).",
        "",
        f"- Label: `{spec.label_column}` (1 = positive), one example per "
        f"`{', '.join(spec.entity_keys)}`, ordered by `{spec.timestamp_column}`.",
        f"- The prediction is made {spec.lead_minutes} minutes before `{spec.timestamp_column}`; "
        "every feature is what was known then.",
        "",
        "## Data window",
        "",
    ]
    split = report.get("split", {})
    for name in ("train", "valid", "holdout"):
        part = split.get(name)
        if part:
            lines.append(
                f"- {name}: {part['rows']:,} rows ({part['positives']:,} positive), "
                f"{part['first']} .. {part['last']}"
            )
    if record:
        days = sorted(record["data"]["partitions"])
        read = (
            "the whole table"
            if days == [WHOLE_TABLE]
            else f"{len(days)} partition(s) {days[0]} .. {days[-1]}"
        )
        lines.append(
            f"- read from `{record['data']['table']}`: {read}, {record['data']['rows']:,} rows"
            + (f", until {record['data']['until']}" if record["data"].get("until") else "")
        )
    lines += ["", "## Features and their sources", ""]
    served = [f for f in spec.features if f not in spec.request_features]
    source = (
        f"Feast FeatureService `{spec.feature_service}` (point-in-time join)"
        if spec.feature_service
        else "the training table"
    )
    lines.append(f"- From {source}: " + ", ".join(f"`{f}`" for f in served))
    if spec.request_features:
        lines.append(
            "- Computed from the request itself: "
            + ", ".join(f"`{f}`" for f in spec.request_features)
        )
    lines.append(f"- Categorical: {', '.join(spec.categorical_features) or 'none'}")
    lines += [
        "",
        "## Holdout metrics",
        "",
        f"Holdout from {report['holdout']['start']}: {report['holdout']['rows']:,} rows, "
        f"{report['holdout']['positives']:,} positive.",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for name, m in metrics.items():
        mark = " **(this)**" if name == family else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    lines += ["", "AUC difference of this model (95% paired bootstrap interval):", ""]
    champion = report.get("champion")
    for ref, d in versus.items():
        what = (
            f"the champion it would replace (v{champion['version']}, {champion['family']})"
            if ref == "champion" and champion
            else ref
        )
        lines.append(
            f"- vs {what}: {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
            f"({d['samples']} resamples)"
        )
    if not champion:
        lines.append("- no champion yet: this would be the first")
    slices = [s for s in report.get("slices", []) if family in s]
    if slices:
        ref = report["reference"]
        lines += ["", f"## Slices (ROC AUC, this model vs {ref})", ""]
        columns = [k for k in slices[0] if k not in metrics and k not in (family,)]
        lines.append("| " + " | ".join(columns) + f" | {family} | {ref} |")
        lines.append("|---" * (len(columns) + 2) + "|")
        for s in slices:
            lines.append(
                "| "
                + " | ".join(str(s[c]) for c in columns)
                + f" | {_num(s.get(family))} | {_num(s.get(ref))} |"
            )
    lines += [
        "",
        "## Calibration",
        "",
        f"- expected calibration error {metrics[family]['ece']:.4f}, Brier score "
        f"{metrics[family]['brier']:.4f}, log loss {metrics[family]['log_loss']:.4f}",
        f"- mean predicted probability {calibration['mean_predicted']:.4f} vs observed rate "
        f"{calibration['observed_rate']:.4f} on the holdout",
        "",
        "## Known limits",
        "",
    ]
    lines += [f"- {limit}" for limit in spec.known_limits] or [
        "- none declared (`known_limits` in the task's defs.yaml)"
    ]
    lines += ["", "## How to reproduce", ""]
    lines.append(f"    flightline reproduce --task {spec.name} --version {version}")
    lines.append("")
    if record:
        code = record["code"]
        lines += [
            f"- code: commit `{code['commit']}`"
            + (" (uncommitted changes)" if code["dirty"] else ""),
            f"- lockfile uv.lock sha256 `{record['lockfile_sha256']}`",
            f"- image digest: `{record['image_digest']}`"
            if record.get("image_digest")
            else "- image digest: none (not trained on the cluster)",
            f"- seeds: {record['seeds']}",
            f"- parameters: `{record['params']}`",
        ]
        if record.get("tuning"):
            t = record["tuning"]
            lines.append(
                f"- tuned: study `{t['study']}`, best trial {t['best_trial']} of "
                f"{t['trials_complete']} complete and {t['trials_pruned']} pruned"
            )
    else:
        lines.append("- no reproduction record (trained before records were written)")
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def render_html(markdown_text: str, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>"
        f"</head><body>{body}</body></html>"
    )
