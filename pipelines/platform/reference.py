"""The reference pages generated from the code: `docs/reference.md` (every `defs.yaml` field with
its type, default and description; the `TaskDomain` members; the contract kinds; the gate and
split keys) and `docs/defs.schema.json` (a JSON Schema of a task's `defs.yaml` for editors).

`python -m pipelines.platform.reference` (`make reference`) rewrites both; `--check` exits 1
when either is stale (tests/platform/test_reference.py runs it). A field's description is its
pydantic `description`, else the comment on or above it in the source."""

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = ROOT / "docs" / "reference.md"
SCHEMA = ROOT / "docs" / "defs.schema.json"
COMPONENT = "pipelines.platform.components.task.PredictionTask"


def source_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on its line, or the comment lines right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    out = {}
    [node] = ast.parse(source).body
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign | ast.Assign):
            continue
        target = statement.target if isinstance(statement, ast.AnnAssign) else statement.targets[0]
        if not isinstance(target, ast.Name):
            continue
        first, last = statement.lineno - 1, statement.end_lineno - 1
        trailing = lines[last].split("  # ", 1)
        above = []
        row = first - 1
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        text = " ".join(above)
        if len(trailing) == 2:
            text = f"{text} {trailing[1].strip()}".strip()
        if text:
            out[target.id] = text
    return out


def type_name(annotation) -> str:
    if isinstance(annotation, list):  # Callable's parameters
        return "[" + ", ".join(type_name(a) for a in annotation) + "]"
    if annotation is type(None):
        return "null"
    if annotation is Ellipsis:
        return "..."
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _default(value) -> str:
    if value is PydanticUndefined or value is dataclasses.MISSING:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(see below)"
    return f"`{json.dumps(value, default=str)}`"


def model_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    comments = source_comments(model)
    rows = []
    for name, info in model.model_fields.items():
        default = (
            _default(info.default_factory()) if info.default_factory else _default(info.default)
        )
        rows.append(
            (name, type_name(info.annotation), default, info.description or comments.get(name, ""))
        )
    return rows


def dataclass_rows(cls: type) -> list[tuple[str, str, str, str]]:
    comments = source_comments(cls)
    hints = typing.get_type_hints(cls, include_extras=False, localns=_forward_names())
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = _default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _default(f.default_factory())
        else:
            default = "**required**"
        rows.append(
            (f.name, type_name(hints.get(f.name, f.type)), default, comments.get(f.name, ""))
        )
    return rows


def _forward_names() -> dict:
    """Names that modules import only for type checking (pandas), for get_type_hints."""

    class DataFrame:  # stands for pandas.DataFrame in the pages
        pass

    class Series:
        pass

    return {"pd": type("pd", (), {"DataFrame": DataFrame, "Series": Series})}


def _table(rows) -> list[str]:
    out = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, kind, default, text in rows:
        text = text.replace("|", "\\|")
        out.append(f"| `{name}` | {kind} | {default} | {text} |")
    return out


def nested_models(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """(path, model) for every model a field of `model` holds, depth first, each once."""
    found: list[tuple[str, type[BaseModel]]] = []

    def walk(path: str, annotation) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if all(m is not annotation for _, m in found):
                found.append((path, annotation))
                for name, info in annotation.model_fields.items():
                    walk(f"{path}.{name}", info.annotation)
            return
        for arg in typing.get_args(annotation):
            walk(path + "[]" if typing.get_origin(annotation) is list else path, arg)

    for name, info in model.model_fields.items():
        walk(name, info.annotation)
    return found


def markdown() -> str:
    from pipelines.platform.components.definition import TaskDefinition
    from pipelines.platform.lib.task import GateThresholds, TaskDomain, TimeSplit
    from pipelines.platform.lib.validation import (
        CHECKS,
        DTYPES,
        ColumnSpec,
        RangeRule,
        TableContract,
    )

    lines = [
        "# Reference (generated)",
        "",
        "Generated from the code by `make reference` (`python -m pipelines.platform.reference`);",
        "`tests/platform/test_reference.py` fails when this page or `docs/defs.schema.json` is",
        "stale. Do not edit by hand. Back to the [README](../README.md); the worked examples are",
        "in [tasks.md](tasks.md).",
        "",
        "## `defs.yaml`",
        "",
        f"A task is `pipelines/defs/<task>/defs.yaml` with `type: {COMPONENT}` and these",
        "`attributes:` (a misspelt field is an error at load time naming the file and the field).",
        "Editors: point the YAML language server at `docs/defs.schema.json`",
        "(`# yaml-language-server: $schema=../../../docs/defs.schema.json` on a definition's first line).",
        "",
        *_table(model_rows(TaskDefinition)),
    ]
    for path, model in nested_models(TaskDefinition):
        doc = inspect.getdoc(model) if model.__doc__ else ""
        lines += ["", f"### `{path}` ({model.__name__})", ""]
        if doc:
            lines += [doc, ""]
        lines += _table(model_rows(model))
    lines += [
        "",
        "### `split` (TimeSplit)",
        "",
        inspect.getdoc(TimeSplit),
        "",
        *_table(dataclass_rows(TimeSplit)),
        "",
        "### `gate` (GateThresholds)",
        "",
        inspect.getdoc(GateThresholds)
        + " Any of these keys in `gate:` sets the task's own value, e.g. `gate: {min_slice_rows: 50}`.",
        "",
        *_table(dataclass_rows(GateThresholds)),
        "",
        "## `TaskDomain`",
        "",
        inspect.getdoc(TaskDomain),
        "",
        *_table(dataclass_rows(TaskDomain)),
        "",
        "## Contracts",
        "",
        inspect.getdoc(TableContract)
        + " Each landing table names one (`landing_tables[].contract`); its rules become the "
        "blocking checks " + ", ".join(f"`raw_<table>_{c}`" for c in CHECKS) + ".",
        "",
        *_table(dataclass_rows(TableContract)),
        "",
        "`ColumnSpec` (one per column):",
        "",
        *_table(dataclass_rows(ColumnSpec)),
        "",
        "Column kinds and the pandas dtypes each accepts:",
        "",
        "| kind | dtypes |",
        "|---|---|",
        *(f"| `{kind}` | {', '.join(dtypes)} |" for kind, dtypes in DTYPES.items()),
        "",
        "`RangeRule` (one per ranged column):",
        "",
        *_table(dataclass_rows(RangeRule)),
    ]
    return "\n".join(lines) + "\n"


def json_schema() -> str:
    from pipelines.platform.components.definition import TaskDefinition

    attributes = TaskDefinition.model_json_schema()
    defs = attributes.pop("$defs", {})
    # Editors show a field's description on hover: the comments count as descriptions here too.
    for model, entry in [
        (TaskDefinition, attributes),
        *((m, defs.get(m.__name__, {})) for _, m in nested_models(TaskDefinition)),
    ]:
        for name, text in source_comments(model).items():
            field = entry.get("properties", {}).get(name)
            if field is not None and "description" not in field:
                field["description"] = text
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "flightline task definition (pipelines/defs/<task>/defs.yaml)",
        "type": "object",
        "required": ["type", "attributes"],
        "properties": {"type": {"const": COMPONENT}, "attributes": attributes},
        "$defs": defs,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def pages() -> dict[Path, str]:
    return {MARKDOWN: markdown(), SCHEMA: json_schema()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    stale = [p for p, text in pages().items() if not p.exists() or p.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `make reference`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in pages().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
