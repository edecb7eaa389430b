"""The service's door: every request to an API route is checked here before BentoML parses it.

- a body over `max_body_bytes` is a 413, from its Content-Length or while it streams in, before
  any parsing;
- a body that is not `application/json` is a 415 (a multipart body without a boundary too), and
  so is a charset other than UTF-8 (JSON is UTF-8) or a Content-Encoding other than gzip;
- a gzip body is inflated at most to `max_body_bytes` (a bomb is a 413, a plain body under a
  gzip header a 400);
- a body that does not arrive within `body_timeout_s` is a 408 (a Content-Length larger than
  the body, a client trickling it); an answer not started within `timeout_s` a 504;
- the body is validated against the route's strict body model (no coercion, no extra field at
  any level, no key twice in an object, finite numbers only): a 400;
- every error answer but the 503 (which carries the reason), these and any the framework or the
  HTTP server answers itself (404, 405, a malformed request), has one shape:
  `{"detail": [{"loc": [...], "msg": "...", "type": "...", "batch_index": i or null}]}`.

A refused request never reaches the predictor, so nothing of it is written to the prediction log.
"""

import asyncio
import json
import logging
import zlib
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
# Routes the framework answers with no body (probes, the spec, the Swagger page and its files):
# any other path is a 404 here.
INFRA_PATHS = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json"})
INFRA_PREFIXES = ("/static_content/", "/assets/")
# A refusal before the whole body was read closes the connection: the rest is never read.
CLOSE = [(b"connection", b"close")]


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


async def _respond(
    send: Send, status: int, detail: list[dict], path: str = "", headers: list | None = None
) -> None:
    _log_refusal(status, path, detail)
    await _send_json(send, status, _body(detail), headers)


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json.loads' object hook: a key given twice is refused (pydantic keeps the last)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return found


def duplicate_key(body: bytes) -> str | None:
    """The first key an object of `body` repeats, or None (also for a body that is not JSON:
    the body model names what is wrong with it)."""
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except DuplicateKey as exc:
        return str(exc)
    except ValueError:
        return None
    return None


def _log_refusal(status: int, path: str, detail: list[dict]) -> None:
    first = detail[0] if detail else {}
    more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
    where = ".".join(str(part) for part in first.get("loc", []))
    logger.info("refused %s %s: %s: %s%s", status, path, where, first.get("msg", ""), more)


async def _send_json(send: Send, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
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
    (the framework would parse and serialize the same body again); any other route goes on.
    `body_timeout_s`: the most a body may take to arrive (408 after); `timeout_s`: the most an
    answer may take to start (504 after)."""

    def __init__(
        self,
        app,
        bodies: dict[str, type[BaseModel] | None],
        max_body_bytes: int,
        batch_name: str | None = None,
        spec: dict | None = None,
        answers: Mapping[str, Answer] | None = None,
        body_timeout_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self.bodies = bodies
        self.max_body_bytes = max_body_bytes
        self.batch_name = batch_name
        self.spec = json.dumps(spec).encode() if spec is not None else None
        self.answers = answers if answers is not None else {}
        self.body_timeout_s = body_timeout_s
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/docs.json" and self.spec is not None and scope["method"] in ("GET", "HEAD"):
            await _send_json(send, 200, self.spec)
            return
        if path not in self.bodies:
            if path not in INFRA_PATHS and not path.startswith(INFRA_PREFIXES):
                await _respond(send, 404, [error(["path"], f"no route {path}", "not_found")], path)
                return
            await self.app(scope, receive, self._reshaping(send, path))
            return
        if scope["method"] != "POST":
            await _respond(
                send,
                405,
                [
                    error(
                        ["method"], f"{scope['method']} not allowed: use POST", "method_not_allowed"
                    )
                ],
                path,
                [(b"allow", b"POST")],
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        model = self.bodies[path]
        refused = self._refused_by_headers(headers, model is not None)
        if refused is not None:
            await _respond(send, *refused, path, CLOSE)
            return
        try:
            body = await asyncio.wait_for(
                self._read(receive, headers.get("content-encoding", "").strip().lower()),
                self.body_timeout_s,
            )
        except TimeoutError:
            message = f"request body not received within {self.body_timeout_s:g} s"
            await _respond(send, 408, [error(["body"], message, "timeout")], path, CLOSE)
            return
        if body is None:  # the client went away
            return
        if isinstance(body, tuple):
            await _respond(send, *body, path, CLOSE)
            return
        if model is not None:
            repeated = duplicate_key(body)
            if repeated is not None:
                message = f"key {repeated!r} given twice in one object"
                await _respond(
                    send, 400, [error(["body", repeated], message, "duplicate_key")], path
                )
                return
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

        await self._within_deadline(scope, replay, self._reshaping(send, path), path)

    def _refused_by_headers(
        self, headers: dict[str, str], has_model: bool
    ) -> tuple[int, list[dict]] | None:
        """(status, errors) for a request its headers already refuse, else None."""
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, [error(["header", "content-length"], "not a number", "invalid")]
            if int(length) > self.max_body_bytes:
                return 413, self._too_large()
        content_type = headers.get("content-type", "")
        media_type, _, params = content_type.partition(";")
        media_type = media_type.strip().lower()
        has_body = bool(length and int(length)) or "transfer-encoding" in headers
        if (has_model or has_body or media_type) and media_type != JSON_TYPE:
            message = f"unsupported content type {media_type or '(none)'!r}: send {JSON_TYPE}"
            return 415, [error(["header", "content-type"], message, "unsupported_media_type")]
        for param in params.split(";"):
            name, _, value = param.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                message = f"unsupported charset {charset!r}: JSON is UTF-8"
                return 415, [error(["header", "content-type"], message, "unsupported_media_type")]
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", ""):
            message = f"unsupported content encoding {encoding!r}: send gzip or none"
            return 415, [error(["header", "content-encoding"], message, "unsupported_media_type")]
        return None

    def _too_large(self) -> list[dict]:
        message = f"request body larger than {self.max_body_bytes} bytes"
        return [error(["body"], message, "too_large")]

    async def _read(self, receive: Receive, encoding: str) -> bytes | tuple | None:
        """The whole body (inflated if gzip), (status, errors) to refuse it, or None if the
        client went away."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return 413, self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                body = b"".join(chunks)
                return self._inflated(body) if encoding == "gzip" else body

    def _inflated(self, body: bytes) -> bytes | tuple:
        """A gzip body, inflated to at most max_body_bytes (a bomb stops there)."""
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            plain = inflater.decompress(body, self.max_body_bytes + 1)
        except zlib.error as exc:
            return 400, [error(["body"], f"not a gzip body: {exc}", "invalid_encoding")]
        if len(plain) > self.max_body_bytes or inflater.unconsumed_tail:
            return 413, self._too_large()
        if not inflater.eof:
            return 400, [error(["body"], "truncated gzip body", "invalid_encoding")]
        return plain

    async def _within_deadline(self, scope: Scope, receive: Receive, send: Send, path: str):
        """The framework's answer, or a 504 in the one shape if it has not started in time."""
        started = asyncio.Event()

        async def marking(message: Message) -> None:
            started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, marking))
        waiter = asyncio.ensure_future(started.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=self.timeout_s)
        if not done:
            task.cancel()
            waiter.cancel()
            message = f"no answer within {self.timeout_s:g} s"
            await _respond(send, 504, [error(["server"], message, "timeout")], path)
            return
        waiter.cancel()
        await task

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
