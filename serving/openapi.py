"""The service's OpenAPI document, written from the models the door and the API really use.

BentoML's generated document did not match the answers (an error `detail` declared a string,
nullable fields declared non-null, `/metrics` listed while it answers 404). This one is built
from the same pydantic models that validate the bodies and shape the answers, as OpenAPI 3.1
(JSON Schema 2020-12, so pydantic's schemas go in unchanged, `null` included), and lists only
routes that answer. The test suite runs schemathesis against a running service with it.
"""

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(min_length=1, description="Where: body fields, or a header")
    msg: str
    type: str
    batch_index: int | None = Field(description="The batch item at fault; null outside a batch")


class ErrorBody(BaseModel):
    """Every 4xx the service answers, whatever refused the request."""

    detail: list[ErrorItem] = Field(min_length=1)


class Unavailable(BaseModel):
    """The model or the feature store cannot answer now (503), with the reason."""

    model_config = ConfigDict(title="Unavailable")
    error: str
    reason: str


def _json(ref: dict) -> dict:
    return {"application/json": {"schema": ref}}


def _error_responses(refs: dict, statuses: dict[int, str]) -> dict:
    return {
        str(status): {"description": text, "content": _json(refs[ErrorBody])}
        for status, text in statuses.items()
    }


def service_spec(
    title: str,
    description: str,
    version: str,
    apis: dict[str, tuple[type[BaseModel] | None, Any, str]],
    readiness: type[BaseModel],
    infra: dict[str, str],
) -> dict:
    """`apis`: route -> (body model or None, answer type, description); `infra`: GET routes
    that answer 200 in plain text (liveness, readiness probes), with their description."""
    from pydantic import TypeAdapter

    bodies = [model for model, _, _ in apis.values() if model is not None]
    models = [(m, "validation") for m in bodies] + [
        (m, "serialization") for m in (ErrorBody, Unavailable, readiness)
    ]
    keyed, schema = models_json_schema(models, ref_template=REF)
    components = dict(schema.get("$defs", {}))
    refs = {model: keyed[(model, mode)] for model, mode in models}
    paths: dict[str, dict] = {}
    for route, (body, answer, text) in apis.items():
        if answer is readiness:
            ok = refs[readiness]
        else:
            # The answer types are generated per task (a list of them for a batch).
            answer_schema = TypeAdapter(answer).json_schema(mode="serialization", ref_template=REF)
            components.update(answer_schema.pop("$defs", {}))
            ok = answer_schema
        operation: dict[str, Any] = {
            "operationId": route.strip("/"),
            "description": text,
            "responses": {
                "200": {"description": "The answer", "content": _json(ok)},
                **_error_responses(
                    refs,
                    {
                        400: "Invalid body: each error names its field (`loc`) and batch item",
                        413: "Body over the service's size limit, refused before parsing",
                        415: "Content type other than application/json",
                    }
                    if body is not None
                    else {415: "A body that is not application/json"},
                ),
                "503": {
                    "description": "Model or feature store unusable, with the reason",
                    "content": _json(refs[Unavailable]),
                },
            },
        }
        if body is not None:
            operation["requestBody"] = {"required": True, "content": _json(refs[body])}
        paths[route] = {"post": operation}
    for route, text in infra.items():
        paths[route] = {
            "get": {
                "operationId": route.strip("/"),
                "description": text,
                "responses": {
                    "200": {"description": "OK", "content": {"text/plain": {"schema": {}}}}
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


def _unclear_hours(day: date, zone: ZoneInfo) -> set[int]:
    """The wall-clock hours of `day` that a DST change skips or shows twice in `zone`."""
    unclear = set()
    for hour in range(24):
        for minute in (0, 59):
            wall = datetime(day.year, day.month, day.day, hour, minute)
            if wall.replace(tzinfo=zone, fold=0).utcoffset() != (
                wall.replace(tzinfo=zone, fold=1).utcoffset()
            ):
                unclear.add(hour)
    return unclear


def window_pattern(earliest: date, latest: date, zone: ZoneInfo) -> str:
    """A regular expression of the local wall-clock times (no offset) the serving window
    [earliest, latest) accepts in `zone`: every day of it, less the hours a DST change skips or
    repeats, so that every value the spec admits is answered (schemathesis' positive data)."""
    months: dict[tuple[int, int], list[str]] = {}
    changes = []
    day = earliest
    while day < latest:
        unclear = _unclear_hours(day, zone)
        if unclear:
            hours = "|".join(f"{h:02d}" for h in range(24) if h not in unclear)
            changes.append(f"{day.isoformat()}T(?:{hours})")
        else:
            months.setdefault((day.year, day.month), []).append(f"{day.day:02d}")
        day += timedelta(days=1)
    plain = "|".join(f"{y:04d}-{m:02d}-(?:{'|'.join(days)})" for (y, m), days in months.items())
    dated = [f"(?:{plain})T(?:[01][0-9]|2[0-3])"] if plain else []
    return f"^(?:{'|'.join(dated + changes)}):[0-5][0-9](?::[0-5][0-9])?$"


def state_window(spec: dict, model: str, field: str, earliest: date, latest: date, zone) -> None:
    """The serving window in the spec: `field` of the component `model` is a local time in it."""
    prop = spec["components"]["schemas"][model]["properties"][field]
    prop.pop("format", None)
    prop.pop("examples", None)
    prop["pattern"] = window_pattern(earliest, latest, zone)
    prop["description"] = (
        f"{prop.get('description', '')}. Spec: a {zone.key} wall-clock time "
        f"(YYYY-MM-DDTHH:MM[:SS]) on a day in [{earliest}, {latest}), not in an hour a DST "
        "change skips or repeats; the service also reads an ISO 8601 time with an offset"
    ).lstrip(". ")
