"""`DataFrame`: the Dagster type of a pandas DataFrame, for asset and op annotations, without
importing pandas (about 1 s of every load of the code location: issue 18).

Dagster resolves an asset function's annotations when the definitions are built, so
`-> pd.DataFrame` there imports pandas, and a `TYPE_CHECKING`-only name fails to resolve.
Annotate with this instead: it is the type Dagster infers from `pd.DataFrame` (same key, name,
description and isinstance check), with pandas imported only when a value is checked.

    from pipelines.platform.frame_type import DataFrame

    @dg.asset
    def table(raw: DataFrame) -> DataFrame: ...
"""

from typing import Any

import dagster as dg

QUALIFIED_NAME = "pandas.core.frame.DataFrame"


def _pandas_frame() -> type:
    import pandas as pd

    return pd.DataFrame


def _is_frame(_context: Any, value: object) -> dg.TypeCheck:
    if isinstance(value, _pandas_frame()):
        return dg.TypeCheck(success=True)
    # The message of Dagster's own isinstance check.
    return dg.TypeCheck(
        success=False,
        description=f"Value of type {type(value)} failed type check for Dagster type DataFrame, "
        f"expected value to be of Python type {QUALIFIED_NAME}.",
    )


class _DataFrameType(dg.DagsterType):
    def __init__(self) -> None:
        super().__init__(
            key=f"_TypeHintInferred[{QUALIFIED_NAME}]",
            description=f"DagsterType created from a type hint for the Python type {QUALIFIED_NAME}",
            type_check_fn=_is_frame,
        )

    @property
    def display_name(self) -> str:
        return "DataFrame"

    @property
    def typing_type(self) -> Any:
        # What IO managers read to know what to load: only when a step runs.
        return _pandas_frame()


DataFrame = _DataFrameType()
