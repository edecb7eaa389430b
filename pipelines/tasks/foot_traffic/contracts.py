"""The contract of foot traffic's landing table: what a day's file of counts must look like."""

from pipelines.platform.lib.validation import ColumnSpec, RangeRule, TableContract
from pipelines.tasks.foot_traffic.source import SENSORS, day_key

COUNTS = TableContract(
    table="counts",
    columns=[
        ColumnSpec("sensor", "str", key=True),
        ColumnSpec("date_time", "str", key=True),
        ColumnSpec("count", "int"),
    ],
    unique_together=["sensor", "date_time"],
    # The busiest hour of 2015-2016 counted 11,273 people.
    ranges=[RangeRule("count", 0, 20_000)],
    allowed_values={"sensor": list(SENSORS)},
    partition_of=lambda frame: day_key(frame["date_time"]),
)
