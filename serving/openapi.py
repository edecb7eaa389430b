"""The service's OpenAPI document, written from the models the door and the API really use.

BentoML's generated document did not match the answers (an error `detail` declared a string,
nullable fields declared non-null, `/metrics` listed while it answers 404). This one is built
from the same pydantic models that validate the bodies and shape the answers, as OpenAPI 3.1
(JSON Schema 2020-12, so pydantic's schemas go in unchanged, `null` included), and lists only
routes that answer. The test suite runs schemathesis against a running service with it.
"""

from typing import Any

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
