"""The alert ledger: one message per incident and one when it clears, a rate limit that defers
rather than drops, and nothing recorded as told while every sink is down. Delivered to a real
HTTP receiver and a real SMTP server process."""

import pytest

from pipelines.platform.lib.alerts import (
    KINDS,
    Alert,
    AlertLedger,
    DeliveryError,
    EmailSink,
    FileStore,
    RateLimit,
    WebhookSink,
)
from tests.alert_sinks import SmtpServer, WebhookReceiver, free_port, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _alert(kind="drift", incident="flight_delay", summary="drift on 2013-02-01") -> Alert:
    return Alert(kind, incident, summary, {"day": "2013-02-01"})


@pytest.fixture
def hook():
    with WebhookReceiver() as receiver:
        yield receiver


def test_one_message_per_incident_and_one_when_it_clears(tmp_path, hook):
    store = FileStore(str(tmp_path / "state"))
    sinks = [WebhookSink(hook.url)]
    first = AlertLedger(store, "s", sinks).fire([_alert()])
    assert [n.state for n in first.sent] == ["firing"]
    # A new ledger over the same store (a later tick, another process): still the same incident.
    assert AlertLedger(store, "s", sinks).fire([_alert(summary="drift again")]).sent == []
    resolved = AlertLedger(store, "s", sinks).resolve({"drift:flight_delay": "below threshold"})
    assert [n.state for n in resolved.sent] == ["resolved"]
    assert AlertLedger(store, "s", sinks).resolve({"drift:flight_delay": "again"}).sent == []
    assert hook.titles() == [
        "[flightline FIRING] drift: drift on 2013-02-01",
        "[flightline RESOLVED] drift: drift on 2013-02-01",
    ]
    attachment = hook.posts[1]["attachments"][0]
    assert "resolved: below threshold" in attachment["text"]
    assert "incident: drift:flight_delay" in attachment["text"]
    # It fires again later: a new incident, told again.
    assert len(AlertLedger(store, "s", sinks).fire([_alert()]).sent) == 1


def test_reconcile_opens_what_fires_and_resolves_what_stopped(tmp_path, hook):
    store = FileStore(str(tmp_path))
    book = AlertLedger(store, "s", [WebhookSink(hook.url)])
    a, b = _alert(incident="a"), _alert(incident="b")
    assert len(book.reconcile(["drift"], [a, b], "cleared").sent) == 2
    delivery = book.reconcile(["drift"], [a], "cleared")
    assert [(n.alert.incident, n.state) for n in delivery.sent] == [("b", "resolved")]
    # Another kind's open incidents are not this reconcile's business.
    other = _alert(kind="rollout", incident="x")
    book.fire([other])
    assert book.reconcile(["drift"], [a], "cleared").sent == []
    assert book.is_open("rollout", "x")


def test_the_rate_limit_defers_and_sends_later(tmp_path, hook):
    clock = Clock()
    store = FileStore(str(tmp_path))
    sinks = [WebhookSink(hook.url)]
    limit = RateLimit(count=2, window_s=60)
    alerts = [_alert(incident=str(i)) for i in range(3)]
    delivery = AlertLedger(store, "s", sinks, limit, clock).fire(alerts)
    assert (len(delivery.sent), len(delivery.deferred)) == (2, 1)
    clock.now += 30  # still inside the window: the third waits, nothing else is sent
    assert AlertLedger(store, "s", sinks, limit, clock).fire([]).sent == []
    clock.now += 31
    later = AlertLedger(store, "s", sinks, limit, clock).fire([])  # no new evidence needed
    assert [n.alert.incident for n in later.sent] == ["2"]
    assert len(hook.posts) == 3


def test_an_incident_that_clears_before_it_was_told_is_dropped_silently(tmp_path, hook):
    clock = Clock()
    store = FileStore(str(tmp_path))
    limit = RateLimit(count=0, window_s=60)
    book = AlertLedger(store, "s", [WebhookSink(hook.url)], limit, clock)
    assert book.fire([_alert()]).deferred
    delivery = book.resolve({"drift:flight_delay": "flapped"})
    assert delivery.sent == [] and [a.incident for a in delivery.dropped] == ["flight_delay"]
    assert hook.posts == [] and not book.is_open("drift", "flight_delay")


def test_every_sink_down_records_nothing_so_the_next_tick_retries(tmp_path, hook):
    store = FileStore(str(tmp_path))
    down = [WebhookSink(f"http://127.0.0.1:{free_port()}/nothing", timeout_s=2)]
    with pytest.raises(DeliveryError, match="webhook"):
        AlertLedger(store, "s", down).fire([_alert()])
    delivery = AlertLedger(store, "s", [WebhookSink(hook.url)]).fire([_alert()])
    assert len(delivery.sent) == 1 and len(hook.posts) == 1


def test_one_sink_down_the_other_delivers_and_says_so(tmp_path, hook):
    store = FileStore(str(tmp_path))
    sinks = [WebhookSink(hook.url), EmailSink("127.0.0.1", free_port(), "a@b", ("c@d",))]
    delivery = AlertLedger(store, "s", sinks).fire([_alert()])
    assert len(delivery.sent) == 1 and delivery.errors and "email" in delivery.errors[0]


def test_mail_through_a_real_smtp_server(tmp_path):
    with SmtpServer(tmp_path / "maildir") as smtp:
        sink = EmailSink("127.0.0.1", smtp.port, "flightline@example.org", ("oncall@example.org",))
        book = AlertLedger(FileStore(str(tmp_path / "state")), "s", [sink])
        book.fire([_alert(kind=k, incident="i") for k in KINDS])
        book.resolve({f"{k}:i": "test" for k in KINDS})
        messages = wait_until(
            lambda: len(smtp.messages()) == 2 * len(KINDS) and smtp.messages(), "the mails"
        )
    subjects = sorted(str(m["Subject"]) for m in messages)
    assert subjects == sorted(
        f"[flightline {state}] {k}: drift on 2013-02-01"
        for k in KINDS
        for state in ("FIRING", "RESOLVED")
    )
    assert {m["To"] for m in messages} == {"oncall@example.org"}
    assert {m["X-Flightline-Incident"] for m in messages} == {f"{k}:i" for k in KINDS}


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown alert kind"):
        Alert("typo", "x", "y")
