"""Small charts for asset metadata, rendered to PNG (markdown with a data URI shows in the UI)."""

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt
import pandas as pd


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def training_set_summary(frame: pd.DataFrame, feature_columns: list[str], day_column: str) -> bytes:
    """Rows and delay rate per day, and the share of rows each feature is known for."""
    daily = frame.groupby(day_column).agg(rows=("label", "size"), delay_rate=("label", "mean"))
    coverage = frame[feature_columns].notna().mean().sort_values()
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(3.5, 0.16 * len(coverage))), gridspec_kw={"width_ratios": [3, 2]}
    )
    x = pd.to_datetime(daily.index)
    left.bar(x, daily["rows"], color="#c9d7e8", label="labelled flights")
    left.set_ylabel("labelled flights per day")
    rate = left.twinx()
    rate.plot(
        x,
        daily["delay_rate"],
        color="#c0392b",
        marker="." if len(daily) < 60 else None,
        label="delayed > 15 min",
    )
    rate.set_ylabel("delay rate")
    rate.set_ylim(0, max(0.6, float(daily["delay_rate"].max()) * 1.1))
    left.set_title("training rows and label rate by day")
    left.tick_params(axis="x", rotation=30)
    right.barh(coverage.index, coverage.values, color="#5d8aa8")
    right.set_xlim(0, 1)
    right.set_title("share of rows with the feature known")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
