"""Alerts without a paid tier: incidents opened and resolved from instance state, delivered once
each (and once more when they clear) to a Slack-compatible webhook and/or an SMTP relay, with a
rate limit. Plain Python: the sensors in components/alerts.py decide what is firing; this module
keeps the ledger (in a store the caller provides: the Dagster instance, never process memory)
and talks to the sinks."""

import json
import smtplib
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

KINDS = (
    "run_failure",
    "check_failed",
    "landing_overdue",
    "stray_landing",
    "drift",
    "live_degradation",
    "rollout",
)


@dataclass(frozen=True)
class Alert:
    """One incident: `kind` (one of KINDS) and `incident` identify it; a second report of the same
    pair while it is open is the same incident, not a new alert."""

    kind: str
    incident: str
    summary: str
    details: Mapping[str, str] = field(default_factory=dict)
    severity: str = "error"  # error | warning | info
    url: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; kinds: {', '.join(KINDS)}")

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.incident}"


@dataclass(frozen=True)
class Notification:
    alert: Alert
    state: str  # "firing" | "resolved"
    resolution: str = ""  # why it cleared

    @property
    def title(self) -> str:
        tag = "FIRING" if self.state == "firing" else "RESOLVED"
        return f"[flightline {tag}] {self.alert.kind}: {self.alert.summary}"

    def text(self) -> str:
        lines = [self.title]
        if self.resolution:
            lines.append(f"resolved: {self.resolution}")
        lines += [f"{k}: {v}" for k, v in self.alert.details.items()]
        if self.alert.url:
            lines.append(self.alert.url)
        lines.append(f"incident: {self.alert.id}")
        return "\n".join(lines)

    def slack_payload(self) -> dict:
        """Slack's incoming-webhook shape (`text` plus one attachment), which Mattermost, Rocket.Chat
        and most chat relays also accept."""
        color = {"error": "#d00000", "warning": "#e8a200", "info": "#2f6fdb"}[self.alert.severity]
        return {
            "text": self.title,
            "attachments": [
                {
                    "color": "#2eb886" if self.state == "resolved" else color,
                    "fallback": self.text(),
                    "text": self.text(),
                    "fields": [
                        {"title": k, "value": str(v), "short": True}
                        for k, v in {"kind": self.alert.kind, "state": self.state}.items()
                    ],
                }
            ],
        }


class Sink(Protocol):
    name: str

    def send(self, notification: Notification) -> None: ...


@dataclass(frozen=True)
class WebhookSink:
    """POSTs Slack-compatible JSON to an incoming-webhook URL."""

    url: str
    timeout_s: float = 10.0
    name: str = "webhook"

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.slack_payload()).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")


@dataclass(frozen=True)
class EmailSink:
    """Sends a plain-text mail through an SMTP relay (STARTTLS and login when configured)."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_s: float = 10.0
    name: str = "email"

    def send(self, notification: Notification) -> None:
        message = EmailMessage()
        message["Subject"] = notification.title
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="flightline")
        message["X-Flightline-Incident"] = notification.alert.id
        message["X-Flightline-State"] = notification.state
        message.set_content(notification.text())
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


class StateStore(Protocol):
    """Where the ledger lives between ticks: a JSON document per scope."""

    def load(self, scope: str) -> dict: ...

    def save(self, scope: str, document: dict) -> None: ...


class DeliveryError(RuntimeError):
    """Every sink failed: nothing was recorded, so the next tick tries again."""


@dataclass
class RateLimit:
    count: int = 20  # at most this many notifications per scope ...
    window_s: float = 600.0  # ... in this many seconds; the rest wait for the next tick


@dataclass
class Delivery:
    sent: list[Notification] = field(default_factory=list)
    deferred: list[Alert] = field(default_factory=list)  # over the rate limit: next tick
    dropped: list[Alert] = field(default_factory=list)  # cleared before anyone was told
    errors: list[str] = field(default_factory=list)  # a sink that failed (others delivered)


class AlertLedger:
    """Open incidents of one scope (one sensor's), read from and written back to `store`.
    `fire` opens an incident and notifies once; `resolve` closes it and notifies that it cleared;
    `reconcile` does both against the set of what is firing now. Changes are written only after
    at least one sink accepted them, so a relay that is down loses nothing."""

    def __init__(
        self,
        store: StateStore,
        scope: str,
        sinks: Iterable[Sink],
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.scope, self.sinks = store, scope, list(sinks)
        self.rate_limit = rate_limit or RateLimit()
        self.clock = clock
        self.document = store.load(scope) or {}
        self.document.setdefault("open", {})
        self.document.setdefault("sent", [])

    @property
    def open(self) -> dict[str, dict]:
        return self.document["open"]

    def is_open(self, kind: str, incident: str) -> bool:
        return f"{kind}:{incident}" in self.open

    def fire(self, alerts: Iterable[Alert]) -> Delivery:
        return self._apply(list(alerts), [])

    def resolve(self, resolutions: Mapping[str, str]) -> Delivery:
        """`resolutions`: alert id -> why it cleared. Ids not open are ignored."""
        return self._apply([], list(resolutions.items()))

    def reconcile(self, kinds: Iterable[str], firing: Iterable[Alert], why_clear: str) -> Delivery:
        """What fires now opens (once); what is open of `kinds` and no longer fires resolves."""
        firing = list(firing)
        kinds = set(kinds)
        ids = {a.id for a in firing}
        cleared = [
            (i, why_clear) for i, v in self.open.items() if v["kind"] in kinds and i not in ids
        ]
        return self._apply(firing, cleared)

    def _budget(self, now: float) -> int:
        window = [t for t in self.document["sent"] if now - t < self.rate_limit.window_s]
        self.document["sent"] = window
        return max(0, self.rate_limit.count - len(window))

    def _apply(self, firing: list[Alert], cleared: list[tuple[str, str]]) -> Delivery:
        now = self.clock()
        delivery = Delivery()
        outbox: list[tuple[Notification, Callable[[], None]]] = []
        for alert in firing:
            entry = self.open.get(alert.id)
            if entry is None:
                entry = self.open[alert.id] = {**_alert_doc(alert), "since": now, "notified": False}
            if not entry["notified"]:
                outbox.append((Notification(alert, "firing"), _mark(entry)))
        queued = {n.alert.id for n, _ in outbox}
        for alert_id, entry in list(self.open.items()):  # deferred earlier by the rate limit
            if not entry["notified"] and alert_id not in queued and alert_id not in dict(cleared):
                outbox.append((Notification(alert_from(entry), "firing"), _mark(entry)))
        for alert_id, why in cleared:
            entry = self.open.get(alert_id)
            if entry is None:
                continue
            if not entry["notified"]:  # nobody was told it fired: nobody needs told it cleared
                delivery.dropped.append(alert_from(entry))
                del self.open[alert_id]
                continue
            outbox.append(
                (Notification(alert_from(entry), "resolved", why), _drop(self.open, alert_id))
            )
        budget = self._budget(now)
        for notification, commit in outbox:
            if budget <= 0:
                delivery.deferred.append(notification.alert)
                continue
            errors = self._send(notification)
            if len(errors) == len(self.sinks) and self.sinks:
                delivery.errors += errors
                self.store.save(self.scope, self.document)  # what was delivered so far stays
                raise DeliveryError("; ".join(errors))
            delivery.errors += errors
            commit()
            self.document["sent"].append(now)
            budget -= 1
            delivery.sent.append(notification)
        self.store.save(self.scope, self.document)
        return delivery

    def _send(self, notification: Notification) -> list[str]:
        errors = []
        for sink in self.sinks:
            try:
                sink.send(notification)
            except (OSError, smtplib.SMTPException) as exc:
                errors.append(f"{sink.name}: {type(exc).__name__}: {exc}")
        return errors


def _alert_doc(alert: Alert) -> dict:
    return {**asdict(alert), "details": dict(alert.details)}


def alert_from(entry: dict) -> Alert:
    """The alert an open ledger entry records."""
    fields = {k: entry[k] for k in ("kind", "incident", "summary", "details", "severity", "url")}
    return Alert(**fields)


def _mark(entry: dict) -> Callable[[], None]:
    return lambda: entry.__setitem__("notified", True)


def _drop(open_: dict, alert_id: str) -> Callable[[], None]:
    return lambda: open_.pop(alert_id, None)


@dataclass
class FileStore:
    """A JSON file per scope in a folder (tests, and a single-machine setup without an instance)."""

    folder: str

    def _path(self, scope: str):
        from pathlib import Path

        return Path(self.folder) / f"{scope.replace('/', '__')}.json"

    def load(self, scope: str) -> dict:
        path = self._path(scope)
        return json.loads(path.read_text()) if path.exists() else {}

    def save(self, scope: str, document: dict) -> None:
        path = self._path(scope)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document))
        tmp.replace(path)
