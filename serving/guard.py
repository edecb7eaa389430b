"""The service's door: every request to an API route is checked here before BentoML parses it.

- a body over `max_body_bytes` is a 413, from its Content-Length or while it streams in, before
  any parsing;
- a body that is not `application/json` is a 415 (a multipart body without a boundary too);
- the body is validated against the route's strict body model (no coercion, no extra field at
  any level, finite numbers only): a 400;
- every 4xx, these and any the framework answers itself, has one shape:
  `{"detail": [{"loc": [...], "msg": "...", "type": "...", "batch_index": i or null}]}`.

A refused request never reaches the predictor, so nothing of it is written to the prediction log.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from pydantic import BaseModel, ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON_TYPE = "application/json"
# A refused request is the client's mistake: one line at INFO, never a traceback.
logger = logging.getLogger("flightline.serving")


def error(loc: list, msg: str, kind: str, batch_index: int | None = None) -> dict:
    return {"loc": loc, "msg": msg, "type": kind, "batch_index": batch_index}


def validation_errors(exc: ValidationError, batch_name: str | None) -> list[dict]:
    """pydantic's errors in the service's shape; the item's index for a batch's items."""
    errors = []
    for item in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = list(item["loc"]) or ["body"]
        index = None
        if batch_name and len(loc) > 1 and loc[0] == batch_name and isinstance(loc[1], int):
            index = loc[1]
        errors.append(error(loc, item["msg"], item["type"], index))
    return errors


def _body(detail: list[dict]) -> bytes:
    return json.dumps({"detail": detail}).encode()


async def _respond(send: Send, status: int, detail: list[dict], path: str = "") -> None:
    _log_refusal(status, path, detail)
    await _send_json(send, status, _body(detail))


def _log_refusal(status: int, path: str, detail: list[dict]) -> None:
    first = detail[0] if detail else {}
    more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
    where = ".".join(str(part) for part in first.get("loc", []))
    logger.info("refused %s %s: %s: %s%s", status, path, where, first.get("msg", ""), more)


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def reshape(payload: Any) -> list[dict]:
    """Any 4xx body the framework wrote, in the service's shape."""
    if isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        items = payload["detail"]
    elif isinstance(payload, list):
        items = payload
    else:
        items = [payload]
    detail = []
    for item in items:
        if isinstance(item, dict) and "loc" in item and "msg" in item:
            loc = list(item["loc"]) or ["body"]
            index = item.get("batch_index")
            detail.append(error(loc, str(item["msg"]), item.get("type", "invalid"), index))
        elif isinstance(item, dict):
            message = item.get("error") or item.get("detail") or json.dumps(item)
            detail.append(error(["body"], str(message), "invalid"))
        else:
            detail.append(error(["body"], str(item), "invalid"))
    return detail or [error(["body"], "invalid request", "invalid")]


# A route answered at the door: the validated body -> (status, JSON bytes).
Answer = Callable[[BaseModel], tuple[int, bytes]]


class RequestGuard:
    """ASGI middleware; `bodies` maps an API route to its body model (None: no body read).
    `spec`: the OpenAPI document served at `/docs.json` in place of the framework's.
    `answers`: routes answered here from the body already validated, once the service fills it
    (the framework would parse and serialize the same body again); any other route goes on."""

    def __init__(
        self,
        app,
        bodies: dict[str, type[BaseModel] | None],
        max_body_bytes: int,
        batch_name: str | None = None,
        spec: dict | None = None,
        answers: Mapping[str, Answer] | None = None,
    ) -> None:
        self.app = app
        self.bodies = bodies
        self.max_body_bytes = max_body_bytes
        self.batch_name = batch_name
        self.spec = json.dumps(spec).encode() if spec is not None else None
        self.answers = answers if answers is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/docs.json" and self.spec is not None and scope["method"] in ("GET", "HEAD"):
            await _send_json(send, 200, self.spec)
            return
        if path not in self.bodies:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":  # the framework's 405 (with Allow), in the 4xx shape
            await self.app(scope, receive, self._reshaping(send, path))
            return
        model = self.bodies[scope["path"]]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        too_large = [
            error(
                ["body"],
                f"request body larger than {self.max_body_bytes} bytes",
                "too_large",
            )
        ]
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _respond(
                    send,
                    400,
                    [error(["header", "content-length"], "not a number", "invalid")],
                    path,
                )
                return
            if int(length) > self.max_body_bytes:
                await _respond(send, 413, too_large, path)
                return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        has_body = bool(length and int(length)) or "transfer-encoding" in headers
        if (model is not None or has_body or media_type) and media_type != JSON_TYPE:
            await _respond(
                send,
                415,
                [
                    error(
                        ["header", "content-type"],
                        f"unsupported content type {media_type or '(none)'!r}: send {JSON_TYPE}",
                        "unsupported_media_type",
                    )
                ],
                path,
            )
            return

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _respond(send, 413, too_large, path)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if model is not None:
            try:
                parsed = model.model_validate_json(body)
            except ValidationError as exc:
                await _respond(send, 400, validation_errors(exc, self.batch_name), path)
                return
            answer = self.answers.get(path)
            if answer is not None:
                status, payload = answer(parsed)
                await _send_json(send, status, payload)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, self._reshaping(send, path))

    def _reshaping(self, send: Send, path: str) -> Send:
        """The framework's own 4xx answers, rewritten in the service's shape."""
        state: dict[str, Any] = {}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                if 400 <= message["status"] < 500:
                    state["start"], state["chunks"] = message, []
                    return
                await send(message)
                return
            if "start" not in state or message["type"] != "http.response.body":
                await send(message)
                return
            state["chunks"].append(message.get("body", b""))
            if message.get("more_body", False):
                return
            raw = b"".join(state["chunks"])
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode("utf-8", "replace")}
            detail = reshape(payload)
            start = state["start"]
            _log_refusal(start["status"], path, detail)
            body = _body(detail)
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return wrapped
