"""The contract of wind power's landing table: what a day's file of SCADA readings must look like.

Ranges guard the readings the features use (power, wind speed, wind direction); the others are
carried as exported and used by nothing, so a dead thermometer (-273.2) blocks no day."""

from pipelines.platform.lib.validation import ColumnSpec, RangeRule, TableContract
from pipelines.tasks.wind_power.source import RATED_KW, TURBINES, day_key

SCADA = TableContract(
    table="scada",
    columns=[
        ColumnSpec("Wind_turbine_name", "str", key=True),
        ColumnSpec("Date_time", "str", key=True),
        *(
            ColumnSpec(name, "number")
            for name in ("Ba_avg", "P_avg", "Ws_avg", "Va_avg", "Ot_avg", "Ya_avg", "Wa_avg")
        ),
    ],
    # The spring-forward days repeat the 03:00 hour: this is the check that stops them.
    unique_together=["Wind_turbine_name", "Date_time"],
    ranges=[
        # An idle turbine draws a little power (down to -18 kW in 2014-2015); none exceeds its
        # rating by more than a few kW.
        RangeRule("P_avg", -100.0, RATED_KW * 1.05),
        RangeRule("Ws_avg", 0.0, 40.0),
        RangeRule("Wa_avg", 0.0, 360.0),
    ],
    allowed_values={"Wind_turbine_name": list(TURBINES)},
    partition_of=lambda frame: day_key(frame["Date_time"]),
)
