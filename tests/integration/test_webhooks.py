"""The webhook dispatcher end to end on both backends: real consumers and sender in process, a
real HTTP receiver on loopback that checks every signature by the spec's algorithm
(``webhook_support.py``), failures scripted per path."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks.webhooks import Webhook

from lightning.api.metrics import metrics_response
from lightning.bootstrap import Lightning
from lightning.domain.errors import Conflict, ValidationFailed
from lightning.services import SYSTEM, Context
from lightning.store.secrets import Keyring

from .sagas_support import Clock, open_app
from .webhook_support import Receiver, dead_endpoint, eventually

GROK = {"provider": "grok", "model": "grok-code-fast-1"}
FAST = {
    "webhook_allow_private": True,
    "webhook_retry_schedule": "200ms,400ms,800ms",
    "webhook_timeout": 2.0,
    "webhook_poll": 0.05,
}


# What does not depend on the backend (the sender's and the rules' logic) runs on SQLite only.
SENDER_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def ctx() -> Context:
    return Context(SYSTEM)


def running(database_url: str, clock: Clock | None = None, **settings: Any) -> Lightning:
    app = open_app(database_url, clock, **(FAST | settings))
    if clock is None:
        app.clock = __import__("lightning.services.common").services.common.utc_now
    app.start_embedded_workers()
    return app


@pytest.fixture
def app(database_url: str) -> Iterator[Lightning]:
    lightning = running(database_url)
    try:
        yield lightning
    finally:
        lightning.close()


def subscribe(app: Lightning, receiver: Receiver, types: list[str], path: str = "/hook") -> UUID:
    result = app.webhooks.subscribe(ctx(), url=receiver.url(path), event_types=types)
    assert result.secret is not None and result.secret.startswith("whsec_")
    receiver.secrets.append(result.secret)
    return result.subscription.id


def register(app: Lightning, name: str) -> int:
    return app.agents.register(ctx(), name=name, **GROK).position


def deliveries(app: Lightning, subscription: UUID, status: str | None = None) -> list[Any]:
    page = app.deliveries.listed(
        subscription_id=str(subscription), status=status, first=500, after=None
    )
    return [view for _, view in page.items]


def of_type(app: Lightning, event_type: str) -> list[Any]:
    return [e for e in app.store.iterate(0) if e.type == event_type]


# ---- what arrives -----------------------------------------------------------------------------


def test_every_matching_event_arrives_signed_with_the_redacted_envelope(
    app: Lightning, receiver: Receiver
) -> None:
    register(app, "before")  # appended before the subscription: never sent
    subscription = subscribe(app, receiver, ["agent.*", "api_key.issued"])
    positions = [register(app, f"a{i}") for i in range(3)]
    key = app.api_keys.issue(ctx(), name="ci", role="viewer")
    app.workflows.create(
        ctx(),
        name="w",
        graph={"nodes": [{"id": "r", "kind": "human_review", "config": {}}], "edges": []},
    )
    eventually(lambda: len(receiver.at()) == 4, what="four deliveries")
    time.sleep(0.3)  # nothing else comes
    got = receiver.at()
    assert len(got) == 4
    assert [r.json["data"]["position"] for r in got] == [*positions, key.position]
    for r in got:
        assert r.verified_by == receiver.secrets  # by the spec's algorithm, written in the test
        Webhook(receiver.secrets[0]).verify(r.body, r.headers)  # and the reference library
        envelope = app.store.get(r.json["data"]["position"])
        assert envelope is not None
        assert r.json == {
            "type": envelope.type,
            "timestamp": r.json["data"]["occurred_at"],
            "data": envelope.public(),
        }
    assert "secret_hash" not in got[-1].json["data"]["data"]
    assert {r.id for r in got} == {
        "msg_" + UUID(v.row["id"]).hex for v in deliveries(app, subscription)
    }
    assert all(v.row["status"] == "SUCCEEDED" for v in deliveries(app, subscription))


def test_a_500_is_retried_on_the_schedule_with_the_same_webhook_id(
    app: Lightning, receiver: Receiver
) -> None:
    receiver.replies["/hook"] = [(500, {}, b"boom"), (500, {}, b"boom"), (200, {}, b"ok")]
    subscription = subscribe(app, receiver, ["agent.registered"])
    register(app, "flaky")
    eventually(lambda: len(receiver.at()) == 3, what="three attempts")
    got = receiver.at()
    assert len({r.id for r in got}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert 0.18 <= gaps[0] < 1.5 and 0.36 <= gaps[1] < 2.0, gaps  # 200 ms, 400 ms (±10 %)
    [view] = eventually(lambda: deliveries(app, subscription, "SUCCEEDED"))
    assert [a["status_code"] for a in view.attempts] == [500, 500, 200]
    assert all(a["latency_ms"] > 0 for a in view.attempts)
    assert view.attempts[0]["response"] == "boom"


@SENDER_ONLY
def test_retry_after_is_honoured(app: Lightning, receiver: Receiver) -> None:
    receiver.replies["/hook"] = [(503, {"Retry-After": "1"}, b""), (200, {}, b"")]
    subscribe(app, receiver, ["agent.registered"])
    register(app, "busy")
    eventually(lambda: len(receiver.at()) == 2, what="the retry")
    first, second = receiver.at()
    assert second.at - first.at >= 0.95  # the schedule alone would have waited 200 ms


@SENDER_ONLY
def test_redirects_are_not_followed(app: Lightning, receiver: Receiver) -> None:
    receiver.replies["/hook"] = [(302, {"Location": receiver.url("/elsewhere")}, b"")]
    subscription = subscribe(app, receiver, ["agent.registered"])
    register(app, "moved")
    [view] = eventually(lambda: [v for v in deliveries(app, subscription) if v.attempts])
    assert view.attempts[0]["status_code"] == 302
    assert view.row["last_error"] == "HTTP 302"
    assert receiver.at("/elsewhere") == []


def test_redeliver_sends_the_same_webhook_id_again(app: Lightning, receiver: Receiver) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    register(app, "again")
    [view] = eventually(lambda: deliveries(app, subscription, "SUCCEEDED"))
    app.redeliver_webhook(ctx(), UUID(view.row["id"]))
    eventually(lambda: len(receiver.at()) == 2, what="the redelivery")
    first, second = receiver.at()
    assert first.id == second.id and first.body == second.body
    assert eventually(lambda: len(app.deliveries.get(view.row["id"]).attempts) == 2)
    with pytest.raises(Exception, match="does not exist"):
        app.redeliver_webhook(ctx(), UUID(int=1))


def test_paused_holds_deliveries_until_resumed(app: Lightning, receiver: Receiver) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    app.webhooks.pause(ctx(), subscription)
    register(app, "held")
    eventually(lambda: deliveries(app, subscription), what="the delivery recorded")
    time.sleep(0.3)
    assert receiver.at() == []
    app.webhooks.resume(ctx(), subscription)
    eventually(lambda: len(receiver.at()) == 1, what="the held delivery")


# ---- disabling: 410, the circuit breaker, operators -------------------------------------------


def test_a_410_disables_and_recover_sends_what_was_missed(
    app: Lightning, receiver: Receiver
) -> None:
    receiver.replies["/hook"] = [(410, {}, b"gone"), (200, {}, b"")]
    subscription = subscribe(app, receiver, ["agent.registered"])
    first = register(app, "one")
    [disabled] = eventually(lambda: of_type(app, "webhook.disabled"))
    assert disabled.data["cause"] == "gone" and disabled.actor == "system"
    register(app, "two")  # while disabled: not recorded
    time.sleep(0.3)
    assert len(receiver.at()) == 1
    with pytest.raises(Conflict):
        app.recover_webhooks(ctx(), subscription, first)
    app.webhooks.enable(ctx(), subscription)
    recovered = app.recover_webhooks(ctx(), subscription, first)
    assert recovered.deliveries == 2 and recovered.next_since is None
    eventually(lambda: len(receiver.at()) == 3, what="both recovered")
    ids = [r.id for r in receiver.at()]
    assert ids[0] in ids[1:]  # the one that got the 410 goes again under its webhook-id
    assert sorted(r.json["data"]["data"]["name"] for r in receiver.at()[1:]) == ["one", "two"]


def test_failing_continuously_disables_the_endpoint(database_url: str, receiver: Receiver) -> None:
    app = running(
        database_url,
        webhook_retry_schedule="100ms,100ms,100ms,100ms,100ms,100ms,100ms",
        webhook_disable_after=0.5,
    )
    try:
        receiver.replies["/hook"] = [(500, {}, b"")]
        subscription = subscribe(app, receiver, ["agent.registered"])
        register(app, "doomed")
        [disabled] = eventually(lambda: of_type(app, "webhook.disabled"))
        assert disabled.data["cause"] == "failures"
        assert "failing since" in disabled.data["reason"]
        eventually(lambda: deliveries(app, subscription, "FAILED"), what="the delivery failed")
        text = bytes(metrics_response(app).content).decode()
        assert 'lightning_webhook_subscriptions{status="disabled"} 1.0' in text
        assert 'lightning_webhook_attempt_duration_seconds_count{outcome="http_5xx"}' in text
        assert 'lightning_webhook_deliveries{status="FAILED"} 1.0' in text
        # Enabled again, it receives what comes next.
        receiver.replies["/hook"] = [(200, {}, b"")]
        app.webhooks.enable(ctx(), subscription)
        register(app, "later")
        eventually(
            lambda: any(r.json["data"]["data"].get("name") == "later" for r in receiver.at())
        )
    finally:
        app.close()


# ---- secrets ----------------------------------------------------------------------------------


def test_secret_rotation_signs_with_both_until_the_grace_ends(
    app: Lightning, receiver: Receiver
) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    rotated = app.webhooks.rotate_secret(ctx(), subscription, grace_period_seconds=2)
    assert rotated.secret is not None
    receiver.secrets.append(rotated.secret)
    register(app, "overlap")
    [during] = eventually(lambda: receiver.at())
    assert len(during.signatures) == 2 and during.verified_by == receiver.secrets
    time.sleep(2.1)
    register(app, "after")
    eventually(lambda: len(receiver.at()) == 2)
    after = receiver.at()[1]
    assert len(after.signatures) == 1 and after.verified_by == [rotated.secret]


def test_reencrypt_moves_every_secret_to_the_first_key(
    database_url: str, receiver: Receiver
) -> None:
    old, new = Keyring.generate("old"), Keyring.generate("new")
    with open_app(database_url, encryption_key=old, **FAST) as first:
        subscription = subscribe(first, receiver, ["agent.registered"])
        first.webhooks.rotate_secret(ctx(), subscription)
        assert first.vault.counts() == {"old": 2}
    with open_app(database_url, encryption_key=f"{new},{old}", **FAST) as both:
        moved = both.vault.reencrypt()
        assert (moved.moved, moved.current) == (2, 0)
        assert both.vault.counts() == {"new": 2}
    app = running(database_url, encryption_key=new)  # the old key is gone: still signs
    try:
        register(app, "signed")
        [got] = eventually(lambda: receiver.at())
        assert got.verified_by == receiver.secrets
    finally:
        app.close()


def test_rotation_by_policy_delivers_the_new_secret_once_and_erases_it(
    database_url: str, receiver: Receiver
) -> None:
    clock = Clock()
    app = running(database_url, clock)
    try:
        receiver.replies["/keys"] = [(500, {}, b""), (200, {}, b"")]
        subscription = subscribe(app, receiver, ["agent.registered"], path="/keys")
        context = Context(SYSTEM, now=clock)
        key = app.api_keys.issue(
            context,
            name="auto",
            role="viewer",
            rotation_policy="high_security",
            deliver_to=subscription,
        )
        plain = app.api_keys.issue(
            Context(SYSTEM, now=clock),
            name="manual",
            role="viewer",
            rotation_policy="high_security",
        )
        clock.advance(timedelta(days=30, seconds=1))

        def delivered() -> list[Any]:
            clock.advance(timedelta(seconds=1))  # retries come due on this clock
            app.scheduler.wake()
            return [r for r in receiver.at("/keys") if r.json["type"] == "api_key.rotated"]

        eventually(lambda: len(delivered()) == 2, what="the retried key delivery")
        failed, ok = delivered()
        secret = ok.json["secret"]
        assert failed.json["secret"] == secret and failed.id == ok.id and ok.verified_by
        assert ok.json["data"]["data"]["delivered_to"] == str(subscription)
        assert "secret" not in ok.json["data"]["data"]
        principal = app.api_keys.authenticate(secret, now=clock())
        assert principal is not None and principal.key_id == key.key.id
        eventually(  # erased with the 2xx (recorded once the receiver has answered)
            lambda: (
                app.store.backend.query(
                    "SELECT COUNT(*) AS n FROM secrets WHERE purpose = 'api_key_delivery'"
                )[0]["n"]
                == 0
            )
        )
        assert all(secret not in e.to_json() for e in app.store.iterate(0))
        # A redelivery after that carries no secret.
        [view] = [
            v for v in deliveries(app, subscription) if v.row["event_type"] == "api_key.rotated"
        ]
        app.redeliver_webhook(ctx(), UUID(view.row["id"]))
        eventually(lambda: len(delivered()) == 3)
        assert "secret" not in delivered()[2].json
        # Without deliverTo the notice stands: no rotation.
        assert app.api_keys.get(plain.key.id).rotation_due_at is not None
        assert app.api_keys.get(plain.key.id).version == 2
        assert_no_secret_in_dump(database_url, [secret, *receiver.secrets])
    finally:
        app.close()


def test_no_secret_in_a_database_dump(app: Lightning, receiver: Receiver) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    rotated = app.webhooks.rotate_secret(ctx(), subscription)
    assert rotated.secret is not None
    register(app, "dumped")
    eventually(lambda: receiver.at())
    assert_no_secret_in_dump(app.settings.database_url, [*receiver.secrets, rotated.secret])


def assert_no_secret_in_dump(database_url: str, secrets: list[str]) -> None:
    """Neither a secret nor its key bytes (raw, base64) appear in a raw dump of the database."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        dump = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    else:
        dump = subprocess.run(
            ["pg_dump", "--no-owner", database_url], check=True, capture_output=True
        ).stdout
    assert b"secrets" in dump or b"sealed" in dump
    import base64

    for secret in secrets:
        forms = [secret.encode(), secret.removeprefix("whsec_").encode()]
        if secret.startswith("whsec_"):
            forms.append(base64.b64decode(secret.removeprefix("whsec_")))
        forms.append(base64.b64encode(secret.encode()))
        for form in forms:
            assert form not in dump, f"a secret's form is readable in the dump: {form[:12]!r}…"


# ---- the SSRF guard ---------------------------------------------------------------------------


@SENDER_ONLY
def test_private_addresses_are_refused_at_subscribe_and_at_send(
    database_url: str, receiver: Receiver
) -> None:
    maker = open_app(database_url, **FAST)  # allows private addresses, sends nothing
    sender = running(database_url, webhook_allow_private=False)
    try:
        for url in (
            f"http://127.0.0.1:{receiver.port}/",
            f"http://[::ffff:127.0.0.1]:{receiver.port}/",
            f"http://localhost:{receiver.port}/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "ftp://example.com/",
        ):
            with pytest.raises(ValidationFailed):
                sender.webhooks.subscribe(ctx(), url=url, event_types=["*"])
        # Made where private addresses were allowed, refused where they are sent from: a name
        # that resolves to 127.0.0.1, and the IPv4-mapped form.
        by_name = maker.webhooks.subscribe(
            ctx(), url=f"http://localhost:{receiver.port}/n", event_types=["agent.registered"]
        )
        mapped = maker.webhooks.subscribe(
            ctx(),
            url=f"http://[::ffff:127.0.0.1]:{receiver.port}/m",
            event_types=["agent.registered"],
        )
        register(sender, "probe")
        for made in (by_name, mapped):
            [view] = eventually(
                lambda made=made: [
                    v for v in deliveries(sender, made.subscription.id) if v.attempts
                ]
            )
            assert view.attempts[0]["error"].startswith("refused:"), view.attempts[0]
            assert "not a public address" in view.attempts[0]["error"]
        assert receiver.received == []
    finally:
        sender.close()
        maker.close()


# ---- isolation --------------------------------------------------------------------------------


def test_a_dead_endpoint_never_delays_a_healthy_one(database_url: str, receiver: Receiver) -> None:
    listener, port, fillers = dead_endpoint()
    app = running(database_url, webhook_timeout=1.5, webhook_retry_schedule="5s")
    try:
        dead = app.webhooks.subscribe(
            ctx(), url=f"http://127.0.0.1:{port}/dead", event_types=["agent.registered"]
        )
        subscribe(app, receiver, ["agent.registered"])
        started = time.monotonic()
        for i in range(20):
            register(app, f"agent-{i}")
        eventually(lambda: len(receiver.at()) == 20, timeout=10, what="the healthy deliveries")
        assert time.monotonic() - started < 5  # not held behind the dead endpoint's timeouts
        failing = eventually(
            lambda: [v for v in deliveries(app, dead.subscription.id) if v.row["attempts"] > 0],
            what="the dead endpoint's attempts",
        )
        assert failing[0].attempts[0]["status_code"] is None
        assert failing[0].attempts[0]["error"]
    finally:
        app.close()
        for s in [*fillers, listener]:
            s.close()


def test_pending_retries_survive_a_restart(database_url: str, receiver: Receiver) -> None:
    receiver.replies["/hook"] = [(500, {}, b""), (200, {}, b"")]
    app = running(database_url, webhook_retry_schedule="2s")
    try:
        subscription = subscribe(app, receiver, ["agent.registered"])
        register(app, "survivor")
        eventually(lambda: len(receiver.at()) == 1)
    finally:
        app.close()
    app = running(database_url, webhook_retry_schedule="2s")
    try:
        eventually(lambda: len(receiver.at()) == 2, what="the retry after the restart")
        [view] = eventually(lambda: deliveries(app, subscription, "SUCCEEDED"))
        assert [a["status_code"] for a in view.attempts] == [500, 200]
    finally:
        app.close()


@SENDER_ONLY
def test_bad_input_changes_nothing(app: Lightning, receiver: Receiver) -> None:
    head = app.store.max_position()
    for kwargs in (
        {"url": "http://x/" + "a" * 2100, "event_types": ["*"]},
        {"url": receiver.url(), "event_types": []},
        {"url": receiver.url(), "event_types": ["a*"]},
        {"url": receiver.url(), "event_types": ["*"] * 21},
        {"url": "http://user:pw@example.com/", "event_types": ["*"]},
    ):
        with pytest.raises(ValidationFailed):
            app.webhooks.subscribe(ctx(), **kwargs)
    with pytest.raises(ValidationFailed):
        app.webhooks.rotate_secret(ctx(), UUID(int=5), grace_period_seconds=-1)
    assert app.store.max_position() == head
    assert app.vault.counts() == {}


# ---- what a review found ----------------------------------------------------------------------


def test_a_delete_in_the_same_batch_as_an_event_ends_its_delivery_and_secrets(
    database_url: str, receiver: Receiver
) -> None:
    from lightning.consumers import run_to_head

    with open_app(database_url, **FAST) as app:  # no workers: one batch, driven here
        subscription = subscribe(app, receiver, ["agent.registered"])
        app.webhooks.rotate_secret(ctx(), subscription, grace_period_seconds=0)
        app.webhooks.rotate_secret(ctx(), subscription, grace_period_seconds=0)
        register(app, "gone-with-it")
        app.webhooks.delete(ctx(), subscription)
        run_to_head(app.consumers.build("webhooks"))
        [view] = deliveries(app, subscription)
        assert view.row["status"] == "FAILED"
        assert view.row["last_error"] == "subscription deleted"
        assert app.vault.counts() == {}  # every secret it had, also the rotated-out ones


def test_rotations_erase_the_secrets_that_no_longer_sign(
    app: Lightning, receiver: Receiver
) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    for _ in range(3):
        app.webhooks.rotate_secret(ctx(), subscription, grace_period_seconds=0)
    eventually(lambda: sum(app.vault.counts().values()) == 2, what="current and previous only")


@SENDER_ONLY
def test_a_deleted_subscription_cannot_receive_a_key(app: Lightning, receiver: Receiver) -> None:
    subscription = subscribe(app, receiver, ["agent.registered"])
    app.webhooks.delete(ctx(), subscription)
    with pytest.raises(Exception, match="does not exist") as refused:
        app.api_keys.issue(
            ctx(), name="k", role="viewer", rotation_policy="standard", deliver_to=subscription
        )
    assert getattr(refused.value, "code", None) == "NOT_FOUND"


def test_an_attempt_in_flight_does_not_revive_a_delivery_ended_meanwhile(
    app: Lightning, receiver: Receiver
) -> None:
    receiver.replies["/hook"] = [(500, {}, b"")]
    receiver.delay = lambda _path: 1.0
    subscription = subscribe(app, receiver, ["agent.registered"])
    register(app, "slow")
    eventually(lambda: receiver.at(), what="the attempt under way")
    app.webhooks.delete(ctx(), subscription)
    eventually(lambda: deliveries(app, subscription, "FAILED"), what="ended by the delete")
    eventually(lambda: app.deliveries.get(deliveries(app, subscription)[0].row["id"]).attempts)
    [view] = deliveries(app, subscription)
    assert view.row["status"] == "FAILED" and view.row["next_attempt_at"] is None


def test_two_senders_send_first_attempts_one_at_a_time_in_log_order(
    database_url: str, receiver: Receiver
) -> None:
    receiver.delay = lambda _path: 0.05
    app = running(database_url)
    other = open_app(database_url, **FAST)
    other.start_beside("webhooks")  # a second sender on the same deliveries
    try:
        subscribe(app, receiver, ["agent.registered"])
        positions = [register(app, f"ordered-{i}") for i in range(12)]
        eventually(lambda: len(receiver.at()) == 12, what="every delivery")
        assert [r.json["data"]["position"] for r in receiver.at()] == positions
        assert receiver.most_in_flight == 1
    finally:
        other.close()
        app.close()


@SENDER_ONLY
def test_a_host_name_that_is_not_valid_is_refused(app: Lightning) -> None:
    for url in ("https://hooks..example.com/", f"https://{'a' * 64}.example.com/"):
        with pytest.raises(ValidationFailed, match="not a valid host name"):
            app.webhooks.subscribe(ctx(), url=url, event_types=["*"])
