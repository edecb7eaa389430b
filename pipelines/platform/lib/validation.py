"""Data validation of raw day files with Great Expectations 1.x, grouped into named checks.

Each expectation carries the name of the check it belongs to (in `meta`), so one GX run per
batch feeds several Dagster asset checks, each saying which expectation failed, on how many
rows, with a sample of the offending rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from pipelines.platform.lib.lake import PARTITION_COLUMN

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


SAMPLE_ROWS = 5
DAY_COLUMN = "_day"  # derived: the local day a row claims to belong to


@dataclass(frozen=True)
class ColumnSpec:
    name: str  # the column's name in the landed file
    kind: str  # "int" | "number" | "str"
    key: bool = False  # keys must never be null


@dataclass(frozen=True)
class RangeRule:
    column: str  # a numeric column
    min_value: float | None  # inclusive; None: no lower bound
    max_value: float | None  # inclusive; None: no upper bound
    mostly: float = 1.0  # tolerate rare sensor glitches where the source is known to have them


@dataclass(frozen=True)
class TableContract:
    """What a raw table must look like; the single source of truth for its checks."""

    table: str  # the landing table's name
    columns: Sequence[ColumnSpec]  # every column the file must have, with its kind
    unique_together: Sequence[str]  # no two rows share these values
    ranges: Sequence[RangeRule]  # numeric columns' bounds
    # column -> the only values it may hold (e.g. known sites)
    allowed_values: dict[str, Sequence[str]] = field(default_factory=dict)
    # derived columns (name -> function of the raw frame), computed only when their inputs are numeric
    derived: dict[str, Callable[[pd.DataFrame], pd.Series]] = field(default_factory=dict)
    # The partition key each row claims (checked against the file it landed in); default: the
    # calendar day of its year, month and day columns.
    partition_of: Callable[[pd.DataFrame], pd.Series] | None = None

    @property
    def keys(self) -> list[str]:
        return [c.name for c in self.columns if c.key]


CHECKS = (
    "schema",
    "keys_not_null",
    "values_in_range",
    "unique_rows",
    "on_partition_day",
    "row_count",
)

INT_DTYPES = ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64"]
NUMBER_DTYPES = [*INT_DTYPES, "float16", "float32", "float64", "Float32", "Float64"]
STR_DTYPES = ["object", "str", "string", "String"]
DTYPES = {"int": INT_DTYPES, "number": NUMBER_DTYPES, "str": STR_DTYPES}


@dataclass
class CheckOutcome:
    """The result of one named check over one batch."""

    name: str
    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)  # one per failed expectation
    evaluated: int = 0  # number of expectations evaluated

    @property
    def failed_rows(self) -> int:
        return sum(f.get("rows", 0) for f in self.failures)

    def describe(self) -> str:
        if self.passed:
            return f"{self.evaluated} expectation(s) met"
        return "; ".join(
            f["expectation"] + (f" ({f['rows']} rows)" if f.get("rows") else "")
            for f in self.failures
        )


def with_derived_columns(frame: pd.DataFrame, contract: TableContract) -> pd.DataFrame:
    out = frame.copy()
    # inputs missing or not numeric: no derived column, and the schema check reports why
    for name, fn in contract.derived.items():
        with contextlib.suppress(KeyError, TypeError):
            out[name] = fn(frame)
    with contextlib.suppress(KeyError, TypeError, ValueError):
        out[DAY_COLUMN] = (contract.partition_of or calendar_day)(frame)
    return out


def calendar_day(frame: pd.DataFrame) -> pd.Series:
    """YYYY-MM-DD from year, month and day columns (an invalid date gives a null)."""
    import pandas as pd

    return pd.to_datetime(
        frame[["year", "month", "day"]].astype("Int64").astype("float"), errors="coerce"
    ).dt.strftime("%Y-%m-%d")


@cache
def _gx():
    # GX is slow to import and noisy; load it once per process.
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return gx, context


def build_expectations(frame: pd.DataFrame, contract: TableContract, days: Sequence[str]) -> list:
    """The GX expectations for a batch; column-level ones only for columns that are present."""
    import pandas as pd

    gx, _ = _gx()
    E = gx.expectations
    present = set(frame.columns)
    expectations = [
        E.ExpectTableColumnsToMatchSet(
            column_set=[c.name for c in contract.columns],
            exact_match=False,
            meta={"check": "schema"},
        )
    ]
    for column in contract.columns:
        if column.name not in present:
            continue
        expectations.append(
            E.ExpectColumnValuesToBeInTypeList(
                column=column.name, type_list=DTYPES[column.kind], meta={"check": "schema"}
            )
        )
        if column.key:
            expectations.append(
                E.ExpectColumnValuesToNotBeNull(column=column.name, meta={"check": "keys_not_null"})
            )
    numeric = {c.name for c in contract.columns if c.kind != "str"} | set(contract.derived)
    for rule in contract.ranges:
        if rule.column in present and (
            rule.column not in numeric or pd.api.types.is_numeric_dtype(frame[rule.column])
        ):
            expectations.append(
                E.ExpectColumnValuesToBeBetween(
                    column=rule.column,
                    min_value=rule.min_value,
                    max_value=rule.max_value,
                    mostly=rule.mostly,
                    meta={"check": "values_in_range"},
                )
            )
    for column, values in contract.allowed_values.items():
        if column in present:
            expectations.append(
                E.ExpectColumnValuesToBeInSet(
                    column=column, value_set=list(values), meta={"check": "values_in_range"}
                )
            )
    if set(contract.unique_together) <= present:
        expectations.append(
            E.ExpectCompoundColumnsToBeUnique(
                column_list=list(contract.unique_together), meta={"check": "unique_rows"}
            )
        )
    if DAY_COLUMN in present and PARTITION_COLUMN in present:
        # each row against the day of the file it came from
        expectations.append(
            E.ExpectColumnPairValuesToBeEqual(
                column_A=DAY_COLUMN, column_B=PARTITION_COLUMN, meta={"check": "on_partition_day"}
            )
        )
    elif DAY_COLUMN in present:
        expectations.append(
            E.ExpectColumnValuesToBeInSet(
                column=DAY_COLUMN, value_set=list(days), meta={"check": "on_partition_day"}
            )
        )
    return expectations


def validate(
    frame: pd.DataFrame,
    contract: TableContract,
    days: Sequence[str],
    checks: Collection[str] | None = None,
) -> dict[str, CheckOutcome]:
    """Run the contract's expectations on a batch holding the given days (row count excluded);
    `checks`: only those."""
    _, context = _gx()
    batch_frame = with_derived_columns(frame, contract).reset_index(drop=True)
    outcomes = {name: CheckOutcome(name, True) for name in CHECKS if name != "row_count"}
    if DAY_COLUMN not in batch_frame.columns:
        outcomes["on_partition_day"] = CheckOutcome(
            "on_partition_day",
            False,
            [
                {
                    "expectation": "the columns each row's partition is read from are present and valid",
                    "rows": len(frame),
                }
            ],
        )
    expectations = build_expectations(batch_frame, contract, days)
    if checks is not None:
        outcomes = {k: v for k, v in outcomes.items() if k in checks}
        expectations = [e for e in expectations if e.meta["check"] in checks]
    batch = _batch(context, batch_frame)
    for expectation in expectations:
        result = batch.validate(
            expectation,
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": SAMPLE_ROWS},
        )
        outcome = outcomes[expectation.meta["check"]]
        outcome.evaluated += 1
        if result.success:
            continue
        outcome.passed = False
        outcome.failures.append(_describe_failure(expectation, result, batch_frame, frame))
    return outcomes


def by_partition(
    frame: pd.DataFrame,
    contract: TableContract,
    days: Sequence[str],
    whole: dict[str, CheckOutcome],
) -> dict[str, dict[str, CheckOutcome]]:
    """Each partition's outcome of each check, from the outcomes of the whole batch: a check the
    batch passed passed on each of its partitions; one it failed is validated again partition by
    partition (only then: it costs a GX run per partition), to say which failed."""
    failed = [name for name, outcome in whole.items() if not outcome.passed]
    out = {
        day: {
            name: CheckOutcome(name, True, evaluated=outcome.evaluated)
            for name, outcome in whole.items()
            if outcome.passed
        }
        for day in days
    }
    if failed and len(days) == 1:
        out[days[0]] |= {name: whole[name] for name in failed}
    elif failed:
        for day in days:
            rows = frame[frame[PARTITION_COLUMN] == day].reset_index(drop=True)
            out[day] |= validate(rows, contract, [day], checks=failed)
    return out


def _batch(context, frame: pd.DataFrame):
    name = "raw"
    try:
        source = context.data_sources.get(name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(name)
    try:
        asset = source.get_asset("batch")
    except LookupError:
        asset = source.add_dataframe_asset("batch")
    try:
        definition = asset.get_batch_definition("whole")
    except KeyError:
        definition = asset.add_batch_definition_whole_dataframe("whole")
    return definition.get_batch(batch_parameters={"dataframe": frame})


def _describe_failure(
    expectation, result, batch_frame: pd.DataFrame, raw: pd.DataFrame
) -> dict[str, Any]:
    config = expectation.configuration.kwargs
    detail = {k: v for k, v in config.items() if k not in ("batch_id", "result_format", "meta")}
    failure: dict[str, Any] = {"expectation": f"{expectation.expectation_type}({_short(detail)})"}
    res = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        failure["error"] = str(result.exception_info.get("exception_message"))[:300]
    if "unexpected_count" in res:
        failure["rows"] = int(res["unexpected_count"] or 0)
    if res.get("unexpected_index_list"):
        index = [i for i in res["unexpected_index_list"] if isinstance(i, int)][:SAMPLE_ROWS]
        if index:
            failure["sample"] = raw.iloc[index].to_dict(orient="records")
    if "sample" not in failure and res.get("partial_unexpected_list"):
        failure["sample"] = res["partial_unexpected_list"][:SAMPLE_ROWS]
    if "details" in res and "mismatched" in (res["details"] or {}):
        failure["mismatched"] = res["details"]["mismatched"]
    if "observed_value" in res:
        failure["observed"] = res["observed_value"]
    return failure


def _short(detail: dict) -> str:
    parts = []
    for key, value in detail.items():
        text = repr(value)
        parts.append(f"{key}={text if len(text) < 60 else text[:57] + '...'}")
    return ", ".join(parts)


@dataclass(frozen=True)
class RowCountRule:
    trailing_days: int = 7
    min_ratio: float = 0.5  # below half the trailing median is anomalous (Saturdays run at ~70%)
    min_rows: int = 1


def row_count_outcome(
    counts: dict[str, int], trailing: dict[str, int], rule: RowCountRule = RowCountRule()
) -> CheckOutcome:
    """Flag days whose row count is anomalously low against the days before them.

    `counts` are the days under check; `trailing` are earlier days' counts already in the lake.
    GX has no per-day row-count expectation, so this one is plain pandas.
    """
    import pandas as pd

    history = pd.Series({**trailing, **counts}, dtype="float").sort_index()
    outcome = CheckOutcome("row_count", True)
    for day, rows in sorted(counts.items()):
        outcome.evaluated += 1
        previous = history[history.index < day].tail(rule.trailing_days)
        floor = (
            max(rule.min_rows, rule.min_ratio * previous.median())
            if len(previous)
            else rule.min_rows
        )
        if rows < floor:
            outcome.passed = False
            outcome.failures.append(
                {
                    "expectation": f"row count of {day} >= {floor:.0f} "
                    f"({rule.min_ratio:.0%} of the median of {len(previous)} trailing day(s))",
                    "observed": rows,
                    "partition": day,
                }
            )
    return outcome


def partition_outcome(outcome: CheckOutcome, day: str) -> CheckOutcome:
    """One partition's share of a check whose failures name their partition (row count)."""
    failures = [f for f in outcome.failures if f.get("partition") == day]
    return CheckOutcome(outcome.name, not failures, failures, evaluated=1)
