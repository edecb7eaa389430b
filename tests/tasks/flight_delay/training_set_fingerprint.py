"""A training set's fingerprint: its row count and, per column, the dtype and a digest of the
values in row order. The stored one (training_set_fingerprint.json) was taken from the training
set that the code before issue 27 (commit 4092935: Feast's own point-in-time join, the pandas
feature code) built for WINDOW; any change of a value, a type or the row order changes it.
One deliberate change since (issue 24): `tail_prev_arr_delay` carries a landing only within the
view's 24 h TTL, so that the batch table equals the live path; every other column is as stored."""

import hashlib
import json
from pathlib import Path

import pandas as pd

WINDOW = ("2013-01-28", "2013-02-03")  # crosses a month: the trailing windows reach back
STORED = Path(__file__).with_name("training_set_fingerprint.json")


def fingerprint(frame: pd.DataFrame) -> dict:
    columns = {}
    for name in frame.columns:
        hashed = pd.util.hash_pandas_object(frame[name], index=False).to_numpy()
        columns[name] = [str(frame[name].dtype), hashlib.sha256(hashed.tobytes()).hexdigest()]
    return {"rows": len(frame), "columns": columns}


if __name__ == "__main__":  # python -m tests.tasks.flight_delay.training_set_fingerprint FILE
    import sys

    STORED.write_text(json.dumps(fingerprint(pd.read_parquet(sys.argv[1])), indent=1) + "\n")
