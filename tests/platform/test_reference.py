"""docs/reference.md and docs/defs.schema.json are generated from the code and kept current: a
field added to the definition, the TaskDomain or a contract without regenerating fails here."""

import json

import jsonschema
import pytest
import yaml

from pipelines.platform import reference
from pipelines.platform.components.task import DEFS_ROOT


def test_the_reference_pages_are_current():
    assert reference.main(["--check"]) == 0, "run `make reference` and commit docs/"


def test_every_field_has_a_type_a_default_and_a_description():
    lines = reference.markdown().splitlines()
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        for line in lines
        if line.startswith("| `")
    ]
    fields = [row for row in rows if len(row) == 4]
    assert len(fields) > 60
    assert [name for name, kind, default, text in fields if not (kind and default and text)] == []


@pytest.mark.parametrize("path", sorted(DEFS_ROOT.glob("*/defs.yaml")), ids=lambda p: p.parent.name)
def test_every_definition_meets_the_json_schema(path):
    schema = json.loads(reference.SCHEMA.read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_the_json_schema_refuses_a_misspelt_field():
    schema = json.loads(reference.SCHEMA.read_text())
    document = yaml.safe_load((DEFS_ROOT / "flight_delay" / "defs.yaml").read_text())
    document["attributes"]["serving"]["max_bach"] = 10
    with pytest.raises(jsonschema.ValidationError, match="max_bach"):
        jsonschema.validate(document, schema)


def test_every_schema_property_has_a_description_for_editors():
    schema = json.loads(reference.SCHEMA.read_text())
    entries = [schema["properties"]["attributes"], *schema["$defs"].values()]
    bare = [
        f"{entry.get('title')}.{name}"
        for entry in entries
        for name, field in entry.get("properties", {}).items()
        if not field.get("description")
    ]
    assert bare == []
