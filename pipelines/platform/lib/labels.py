"""Labels become known at an instant (a flight's at its gate arrival, a ramp's two hours after the
prediction): a training set cut at an instant, and live performance scored at one, use only the
labels known by then (issue 24). The instant travels with each example as `label_known_at`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LABEL_KNOWN_AT = "label_known_at"


def cut_instant(cut) -> pd.Timestamp:
    """An ISO instant (naive means UTC), a datetime or a Timestamp, as a UTC Timestamp."""
    import pandas as pd

    stamp = pd.Timestamp(cut)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def known_by(table: pd.DataFrame, cut) -> np.ndarray:
    """Per row: its label was known at `cut`. A table without `label_known_at` (a task that
    declares no label latency) keeps every row."""
    import numpy as np
    import pandas as pd

    if LABEL_KNOWN_AT not in table.columns:
        return np.ones(len(table), bool)
    known_at = pd.to_datetime(table[LABEL_KNOWN_AT], utc=True)
    return (known_at.notna() & (known_at <= cut_instant(cut))).to_numpy()
