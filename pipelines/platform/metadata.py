"""Asset metadata in Dagster's own types: tables, column schemas, pictures and MLflow links."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import dagster as dg

from pipelines.platform.lib.plots import markdown_image

# pandas is imported inside the functions that use it: the code location imports
# this module and must load without it (issue 18, tests/platform/test_cold_start.py).
if TYPE_CHECKING:
    import pandas as pd


# The UI shows a markdown value inline only under this many characters (a longer one sits
# behind "[Show Markdown]"): a picture served by the MLflow UI fits, an embedded PNG never does.
INLINE_MARKDOWN_CHARS = 1000


def _column_type(dtype) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    return "string"


def column_schema(frame: pd.DataFrame, descriptions: dict[str, str] | None = None):
    """The frame's columns as `dagster/column_schema` (what the asset page's Columns tab shows)."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(str(name), _column_type(dtype), description=descriptions.get(name))
            for name, dtype in frame.dtypes.items()
        ]
    )


def add_run_metadata(context: dg.AssetExecutionContext | dg.OutputContext, metadata: dict) -> None:
    """Metadata about what a whole run built (its column schema, its landed files, its feature
    coverage): on a ranged run, on its newest partition only, the one the asset page shows.

    Dagster copies an output's metadata into the materialization of every partition of a ranged
    run: these values (5-26 KB an event) were most of a year's event log, ~39 MB of JSON
    serialized and written twice (issue 27). A one-partition run carries them as before."""
    if isinstance(context, dg.OutputContext):
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if len(keys) > 1:
            context.step_context.add_asset_metadata(
                metadata, asset_key=context.asset_key, partition_key=max(keys)
            )
            return
    else:
        from pipelines.platform.partitions import partition_keys

        keys = partition_keys(context)
        if len(keys) > 1:
            context.add_asset_metadata(metadata, partition_key=max(keys))
            return
    context.add_output_metadata(metadata)


def table_metadata(frame: pd.DataFrame) -> dict:
    """Row count and column schema of a table asset, under Dagster's reserved keys."""
    return {"dagster/row_count": len(frame), "dagster/column_schema": column_schema(frame)}


def _cell(value, digits: int):
    import numpy as np

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits)
    return str(value)


def metric_table(frame: pd.DataFrame, digits: int = 4, index: str | None = None):
    """A small frame as a table value (sortable in the UI); `index` names the index to keep."""
    if index is not None:
        frame = frame.rename_axis(index).reset_index()
    return dg.MetadataValue.table(
        [
            dg.TableRecord({str(k): _cell(v, digits) for k, v in row.items()})
            for row in frame.to_dict("records")
        ],
        schema=column_schema(frame),
    )


def picture(png: bytes | None, alt: str, url: str | None = None):
    """A chart for the asset page: shown inline from `url` (the MLflow UI serving the same PNG
    as a run artifact); without one, embedded (the UI then shows it behind "[Show Markdown]")."""
    markdown = f"![{alt}]({url})" if url else ""
    if url and (len(markdown) < INLINE_MARKDOWN_CHARS or png is None):
        return dg.MetadataValue.md(markdown)
    if png is None:
        raise ValueError(f"picture {alt!r}: neither the PNG nor a URL serving it")
    return dg.MetadataValue.md(markdown_image(png, alt))
