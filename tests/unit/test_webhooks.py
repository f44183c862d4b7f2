"""Webhooks, pure (STYLE 15): the subscription decider, a key's rotation by policy and its saga
timer, signing, the retry schedule, the keyring, the SSRF guard and the router's rows. No
database; the guard resolves ``localhost`` only (``/etc/hosts``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lightning.domain import api_keys, timers, webhooks
from lightning.domain.errors import Conflict, NotFound, ValidationFailed
from lightning.domain.messages import DomainEvent
from lightning.domain.webhooks import (
    Delete,
    Disable,
    Enable,
    Pause,
    Resume,
    RotateSecret,
    Subscribe,
    UpdateSubscription,
    WebhookDeleted,
    WebhookDisabled,
    WebhookEnabled,
    WebhookPaused,
    WebhookResumed,
    WebhookSecretRotated,
    WebhookSubscribed,
    WebhookUpdated,
)
from lightning.sagas.commands import CancelTimer, RotateByPolicy, ScheduleTimer
from lightning.sagas.key_lifecycle import KeyLifecycle
from lightning.store.envelope import Envelope, Metadata, pending
from lightning.store.secrets import (
    ConfigurationError,
    Keyring,
    SecretUnreadable,
    fingerprint,
    new_webhook_secret,
)
from lightning.webhooks import guard, signing
from lightning.webhooks.router import delivery_id, endpoint_row
from lightning.webhooks.schedule import Schedule, parse_schedule, retry_after

from .given import given

SUB, KEY = UUID(int=0x5B), UUID(int=0xE)
S1, S2, S3 = UUID(int=0x51), UUID(int=0x52), UUID(int=0x53)
FP1, FP2 = "a" * 16, "b" * 16
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
URL, URL2 = "https://example.com/hook", "https://example.org/other"
SUBSCRIBED = WebhookSubscribed(
    url=URL, event_types=("agent.*",), secret_id=S1, secret_fingerprint=FP1
)


def state(*events: DomainEvent) -> webhooks.WebhookSubscription | None:
    return given(events, lambda s, e: webhooks.evolve(s, e, SUB))


def when(history: Sequence[DomainEvent], command: webhooks.WebhookCommand) -> list[Any]:
    return webhooks.decide(command, state(*history))


def subscribe(**fields: Any) -> Subscribe:
    values = {"subscription_id": SUB, "url": URL, "event_types": ["agent.*"], "secret_id": S1}
    return Subscribe.of(**{**values, "secret_fingerprint": FP1, **fields})


def rotate(**fields: Any) -> RotateSecret:
    values = {"subscription_id": SUB, "secret_id": S2, "secret_fingerprint": FP2, "at": T0}
    return RotateSecret.of(**{**values, **fields})


def envelope(aggregate: UUID, event: DomainEvent, position: int, at: datetime = T0) -> Envelope:
    return pending(
        event,
        event_id=UUID(int=position),
        aggregate_id=aggregate,
        version=position,
        occurred_at=at,
        meta=Metadata(actor="key:x", correlation_id=UUID(int=0xC0)),
    ).model_copy(update={"position": position})


# ---- subscription: subscribe and its URL ----------------------------------------------------


def test_given_nothing_when_subscribe_then_subscribed() -> None:
    assert when([], subscribe()) == [SUBSCRIBED]


def test_given_subscribed_when_subscribe_twice_then_conflict() -> None:
    with pytest.raises(Conflict):
        when([SUBSCRIBED], subscribe())


PRIVATE = [
    "http://127.0.0.1/",
    "http://10.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://localhost/",
    "http://foo.localhost/",
    "http://169.254.169.254/latest/meta-data/",
]
MALFORMED = [
    "ftp://example.com/",
    "http:///no-host",
    "https://user:pw@example.com/",
    "https://example.com/#fragment",
    "https://example.com/" + "a" * 2048,
    "https://example.com/a b",
    "https://example.com/\x07",
]


@pytest.mark.parametrize("url", PRIVATE + MALFORMED)
def test_given_nothing_when_subscribe_to_a_refused_url_then_bad_user_input(url: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        when([], subscribe(url=url))
    assert refused.value.code == "BAD_USER_INPUT"


@pytest.mark.parametrize("url", PRIVATE)
def test_given_allow_private_when_subscribe_to_a_private_url_then_subscribed(url: str) -> None:
    [event] = when([], subscribe(url=url, allow_private=True))
    assert isinstance(event, WebhookSubscribed) and event.url == url


@pytest.mark.parametrize("url", MALFORMED)
def test_given_allow_private_when_subscribe_to_a_malformed_url_then_still_refused(
    url: str,
) -> None:
    with pytest.raises(ValidationFailed):
        when([], subscribe(url=url, allow_private=True))


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://example.com/hook"])
def test_a_public_url_passes(url: str) -> None:
    assert webhooks.check_url(url, allow_private=False) == url


@pytest.mark.parametrize(
    "patterns", [[], ["a*"], ["agent.re*"], [f"agent.t{i}" for i in range(21)]]
)
def test_given_nothing_when_subscribe_with_bad_event_types_then_refused(
    patterns: list[str],
) -> None:
    with pytest.raises(ValidationFailed):
        subscribe(event_types=patterns)


def test_given_nothing_when_subscribe_with_duplicate_patterns_then_collapsed() -> None:
    assert subscribe(event_types=["agent.*", "*", "agent.*"]).event_types == ("agent.*", "*")


# ---- subscription: update, pause, disable, delete -------------------------------------------


def test_given_subscribed_when_update_with_no_change_then_nothing() -> None:
    same = UpdateSubscription(subscription_id=SUB, url=URL, event_types=["agent.*"], description="")
    assert when([SUBSCRIBED], same) == []


def test_given_subscribed_when_update_twice_then_nothing_the_second_time() -> None:
    update = UpdateSubscription(subscription_id=SUB, url=URL2, description="ops")
    first = when([SUBSCRIBED], update)
    assert first == [WebhookUpdated(url=URL2, description="ops")]
    assert when([SUBSCRIBED, *first], update) == []
    s = state(SUBSCRIBED, *first)
    assert s is not None and (s.url, s.description, s.version) == (URL2, "ops", 2)


def test_given_subscribed_when_update_to_a_private_url_then_refused() -> None:
    with pytest.raises(ValidationFailed):
        when([SUBSCRIBED], UpdateSubscription(subscription_id=SUB, url="http://10.0.0.1/"))


def test_given_subscribed_when_update_paused_then_paused_and_with_a_url_both() -> None:
    assert when([SUBSCRIBED], UpdateSubscription(subscription_id=SUB, paused=True)) == [
        WebhookPaused()
    ]
    both = UpdateSubscription(subscription_id=SUB, url=URL2, paused=True)
    assert when([SUBSCRIBED], both) == [WebhookUpdated(url=URL2), WebhookPaused()]


def test_given_paused_when_pause_then_nothing_and_given_active_when_resume_then_nothing() -> None:
    assert when([SUBSCRIBED, WebhookPaused()], Pause(subscription_id=SUB)) == []
    assert when([SUBSCRIBED], Resume(subscription_id=SUB)) == []
    assert when([SUBSCRIBED, WebhookPaused()], Resume(subscription_id=SUB)) == [WebhookResumed()]


def test_given_disabled_when_pause_then_conflict() -> None:
    with pytest.raises(Conflict):
        when([SUBSCRIBED, WebhookDisabled(cause="failures")], Pause(subscription_id=SUB))


def test_given_subscribed_when_disable_twice_then_disabled_once() -> None:
    disable = Disable(subscription_id=SUB, cause="failures", reason="failing since Monday")
    first = when([SUBSCRIBED], disable)
    assert first == [WebhookDisabled(cause="failures", reason="failing since Monday")]
    assert when([SUBSCRIBED, *first], disable) == []
    s = state(SUBSCRIBED, *first)
    assert s is not None and (s.status, s.disabled_reason) == ("disabled", "failing since Monday")
    operator = state(SUBSCRIBED, *when([SUBSCRIBED], Disable(subscription_id=SUB)))
    assert operator is not None and operator.disabled_reason == "operator"


def test_given_disabled_when_enable_then_enabled_and_given_active_then_nothing() -> None:
    disabled = [SUBSCRIBED, WebhookDisabled(cause="gone")]
    assert when(disabled, Enable(subscription_id=SUB)) == [WebhookEnabled()]
    s = state(*disabled, WebhookEnabled())
    assert s is not None and (s.status, s.disabled_reason) == ("active", None)
    assert when([SUBSCRIBED], Enable(subscription_id=SUB)) == []


def test_given_subscribed_when_delete_twice_then_deleted_once() -> None:
    assert when([SUBSCRIBED], Delete(subscription_id=SUB)) == [WebhookDeleted()]
    assert when([SUBSCRIBED, WebhookDeleted()], Delete(subscription_id=SUB)) == []


AFTERWARDS = [
    Pause(subscription_id=SUB),
    Resume(subscription_id=SUB),
    Disable(subscription_id=SUB),
    Enable(subscription_id=SUB),
    UpdateSubscription(subscription_id=SUB, url=URL2),
    rotate(),
]


@pytest.mark.parametrize("command", [*AFTERWARDS, subscribe()], ids=lambda c: type(c).__name__)
def test_given_deleted_when_anything_but_delete_then_conflict(command: Any) -> None:
    with pytest.raises(Conflict):
        when([SUBSCRIBED, WebhookDeleted()], command)


@pytest.mark.parametrize(
    "command", [*AFTERWARDS, Delete(subscription_id=SUB)], ids=lambda c: type(c).__name__
)
def test_given_nothing_when_anything_but_subscribe_then_not_found(command: Any) -> None:
    with pytest.raises(NotFound):
        when([], command)


# ---- subscription: secret rotation ------------------------------------------------------------


def test_given_subscribed_when_rotate_secret_then_previous_valid_for_grace() -> None:
    assert when([SUBSCRIBED], rotate()) == [
        WebhookSecretRotated(
            secret_id=S2, secret_fingerprint=FP2, previous_valid_until=T0 + timedelta(hours=24)
        )
    ]
    [event] = when([SUBSCRIBED], rotate(grace_period=timedelta(hours=1)))
    assert event.previous_valid_until == T0 + timedelta(hours=1)


def test_given_rotated_when_the_same_rotation_twice_then_nothing() -> None:
    rotated = when([SUBSCRIBED], rotate())
    assert when([SUBSCRIBED, *rotated], rotate()) == []


@pytest.mark.parametrize("grace", [timedelta(days=30, seconds=1), timedelta(seconds=-1)])
def test_given_subscribed_when_rotate_with_grace_out_of_range_then_refused(
    grace: timedelta,
) -> None:
    with pytest.raises(ValidationFailed):
        when([SUBSCRIBED], rotate(grace_period=grace))


def test_given_rotated_then_both_secrets_sign_during_grace_and_only_the_new_one_after() -> None:
    ends = T0 + timedelta(hours=1)
    s = state(
        SUBSCRIBED,
        WebhookSecretRotated(secret_id=S2, secret_fingerprint=FP2, previous_valid_until=ends),
    )
    assert s is not None
    assert (s.previous_secret_id, s.secret_fingerprint) == (S1, FP2)
    assert s.signing_secrets(T0) == [S2, S1]
    assert s.signing_secrets(ends) == [S2]
    assert state(SUBSCRIBED).signing_secrets(T0) == [S1]  # type: ignore[union-attr]


# ---- API keys: rotation by policy, delivered to a subscription ----------------------------------

H1, H2 = "1" * 64, "2" * 64
DELIVERING = api_keys.ApiKeyIssued(
    name="ci", role="operator", secret_hash=H1, rotation_policy="high_security", deliver_to=SUB
)


def key_when(history: Sequence[DomainEvent], command: api_keys.ApiKeyCommand) -> list[Any]:
    return api_keys.decide(command, given(history, lambda s, e: api_keys.evolve(s, e, KEY)))


def by_policy(cycle: int = 1) -> api_keys.RotateByPolicy:
    return api_keys.RotateByPolicy(key_id=KEY, cycle=cycle, secret_hash=H2, secret_id=S3, at=T0)


def test_given_nothing_when_issue_with_deliver_to_but_no_policy_then_refused() -> None:
    issue = api_keys.IssueApiKey(
        key_id=KEY, name="ci", role="operator", secret_hash=H1, issued_at=T0, deliver_to=SUB
    )
    with pytest.raises(ValidationFailed):
        key_when([], issue)


def test_given_a_delivering_key_when_rotate_by_policy_then_rotated_and_delivered() -> None:
    notice = api_keys.ApiKeyRotationDue(due_at=T0, policy="high_security")  # keeps the cycle
    assert key_when([DELIVERING, notice], by_policy()) == [
        api_keys.ApiKeyRotated(
            secret_hash=H2,
            previous_valid_until=T0 + timedelta(days=7),
            delivered_to=SUB,
            secret_id=S3,
        )
    ]


def test_given_a_delivering_key_when_rotate_by_policy_twice_then_rotated_once() -> None:
    first = key_when([DELIVERING], by_policy())
    assert len(first) == 1
    assert key_when([DELIVERING, *first], by_policy()) == []  # the cycle it was for is over


@pytest.mark.parametrize(
    ("history", "cycle"),
    [
        ([DELIVERING], 2),
        ([DELIVERING, api_keys.ApiKeyRevoked()], 1),
        ([DELIVERING.model_copy(update={"deliver_to": None})], 1),
    ],
    ids=["stale cycle", "revoked", "no deliver_to"],
)
def test_given_a_key_not_to_deliver_when_rotate_by_policy_then_nothing(
    history: list[DomainEvent], cycle: int
) -> None:
    assert key_when(history, by_policy(cycle)) == []


# ---- key saga: the rotation-by-policy timer ----------------------------------------------------


class KeyRun:
    """Feed the key saga one event after another, as the runtime would."""

    def __init__(self) -> None:
        self.saga, self.instance, self.position = KeyLifecycle(), None, 0

    def event(self, event: DomainEvent, at: datetime = T0) -> list[Any]:
        self.position += 1
        decision = self.saga.decide(self.instance, envelope(KEY, event, self.position, at), T0)
        if decision is None:
            return []
        self.instance = decision.instance  # type: ignore[assignment]
        return list(decision.commands)


def fired(step: str, due: datetime) -> timers.TimerFired:
    return timers.TimerFired(due_at=due, saga="key_lifecycle", instance=str(KEY), step=step)


def test_given_a_delivering_key_issued_then_notice_and_rotation_timers() -> None:
    due = T0 + timedelta(days=30)
    assert KeyRun().event(DELIVERING) == [
        ScheduleTimer(
            "rotation notice @v1",
            due_at=T0 + timedelta(days=27),
            payload={"due_at": due.isoformat()},
        ),
        ScheduleTimer("rotate by policy @v1", due_at=due, payload={}),
    ]


def test_given_a_policy_without_deliver_to_then_no_rotation_timer() -> None:
    commands = KeyRun().event(DELIVERING.model_copy(update={"deliver_to": None}))
    assert [c.step for c in commands] == ["rotation notice @v1"]


def test_given_the_rotation_timer_fires_twice_then_one_rotate_by_policy() -> None:
    run = KeyRun()
    run.event(DELIVERING)
    due = T0 + timedelta(days=30)
    assert run.event(fired("rotate by policy @v1", due)) == [
        RotateByPolicy("rotate by policy @v1", key_id=KEY, cycle=1)
    ]
    assert run.event(fired("rotate by policy @v1", due)) == []


def test_given_rotated_then_the_next_cycle_gets_its_own_rotation_timer() -> None:
    run = KeyRun()
    run.event(DELIVERING)
    later = T0 + timedelta(days=30)
    rotated = api_keys.ApiKeyRotated(
        secret_hash=H2, previous_valid_until=later, delivered_to=SUB, secret_id=S3
    )
    commands = run.event(rotated, at=later)
    assert CancelTimer("cancel rotate by policy @v1", timer_step="rotate by policy @v1") in commands
    assert (
        ScheduleTimer("rotate by policy @v2", due_at=later + timedelta(days=30), payload={})
        in commands
    )


# ---- signing (Standard Webhooks) --------------------------------------------------------------

SECRET_1 = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET_2 = "whsec_" + base64.b64encode(bytes(range(32, 64))).decode()
BODY = signing.body("agent.retired", "2026-11-23T10:00:00.000000Z", {"name": "é"})


def expected(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def test_each_secret_signs_one_v1_entry_in_order() -> None:
    one, two = (expected(s, "msg_1", 1_700_000_000, BODY) for s in (SECRET_1, SECRET_2))
    assert signing.signature([SECRET_1], "msg_1", 1_700_000_000, BODY) == f"v1,{one}"
    both = signing.signature([SECRET_1, SECRET_2], "msg_1", 1_700_000_000, BODY)
    assert both == f"v1,{one} v1,{two}"


def test_the_reference_library_verifies_a_two_secret_header_with_either_secret() -> None:
    headers = signing.headers("msg_1", int(time.time()), [SECRET_1, SECRET_2], BODY)
    for secret in (SECRET_1, SECRET_2):
        assert Webhook(secret).verify(BODY, headers)["data"] == {"name": "é"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(BODY, headers)


# ---- retry schedule -----------------------------------------------------------------------------

DEFAULT = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_the_default_schedule_parses_to_seconds() -> None:
    assert parse_schedule("5s,5m,30m,2h,5h,10h,10h") == DEFAULT


@pytest.mark.parametrize("text", ["5", "5x", "0s", ",".join(["1s"] * 21)])
def test_a_bad_schedule_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        parse_schedule(text)


def test_the_next_delay_is_the_step_within_ten_percent_then_none() -> None:
    schedule = Schedule(DEFAULT)
    for made, step in enumerate(DEFAULT, start=1):
        for _ in range(50):
            delay = schedule.next_delay(made)
            assert delay is not None and 0.9 * step <= delay <= 1.1 * step
    assert schedule.next_delay(len(DEFAULT) + 1) is None
    assert schedule.next_delay(len(DEFAULT) + 1, retry_after=5.0) is None


def test_a_retry_after_replaces_the_step_within_a_day() -> None:
    schedule = Schedule(DEFAULT)
    assert schedule.next_delay(1, retry_after=120.0) == 120.0
    assert schedule.next_delay(1, retry_after=10.0**6) == 86400.0
    assert schedule.next_delay(1, retry_after=-5.0) == 0.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0
    in_a_minute = format_datetime(T0 + timedelta(seconds=60), usegmt=True)
    assert retry_after(in_a_minute, now=T0) == 60.0
    assert retry_after(format_datetime(T0 - timedelta(hours=1), usegmt=True), now=T0) == 0.0
    assert retry_after("soon, perhaps") is None
    assert retry_after(None) is None


def test_retry_after_with_a_superscript_digit_is_unreadable_not_a_crash() -> None:
    assert retry_after("\u00b2") is None  # latin-1 byte 0xB2 in a header


# ---- keyring ----------------------------------------------------------------------------------

OLD = "old:" + base64.b64encode(b"o" * 32).decode()
NEW = "new:" + base64.b64encode(b"n" * 32).decode()
CONTEXT = b"lightning-secret\x1fid\x1fwebhook"


def test_a_keyring_parses_two_keys_and_the_first_seals() -> None:
    ring = Keyring.parse(f"{NEW}, {OLD}")
    assert [k for k, _ in ring.keys] == ["new", "old"] and ring.current == "new"
    key_id, sealed = ring.seal(b"whsec_x", CONTEXT)
    assert key_id == "new" and ring.open(key_id, sealed, CONTEXT) == b"whsec_x"
    assert Keyring.parse(Keyring.generate("k1")).current == "k1"


def test_a_sealed_secret_does_not_open_in_another_context_or_without_its_key() -> None:
    ring = Keyring.parse(NEW)
    key_id, sealed = ring.seal(b"whsec_x", CONTEXT)
    with pytest.raises(SecretUnreadable):
        ring.open(key_id, sealed, CONTEXT + b"-elsewhere")
    with pytest.raises(SecretUnreadable):
        Keyring.parse(OLD).open(key_id, sealed, CONTEXT)


def test_a_secret_sealed_under_the_old_key_opens_once_a_new_key_goes_first() -> None:
    key_id, sealed = Keyring.parse(OLD).seal(b"whsec_x", CONTEXT)
    both = Keyring.parse(f"{NEW},{OLD}")
    assert both.open(key_id, sealed, CONTEXT) == b"whsec_x"
    assert both.seal(b"whsec_x", CONTEXT)[0] == "new"


def test_a_truncated_ciphertext_is_unreadable() -> None:
    with pytest.raises(SecretUnreadable):
        Keyring.parse(NEW).open("new", "AAAA", CONTEXT)


@pytest.mark.parametrize(
    "value",
    [
        "new" + base64.b64encode(b"n" * 32).decode(),  # no colon
        "bad id!:" + base64.b64encode(b"n" * 32).decode(),
        "short:" + base64.b64encode(b"n" * 31).decode(),
        "new:not*base64!",
        f"{NEW},{NEW}",
    ],
    ids=["no colon", "bad id", "31 bytes", "not base64", "duplicate id"],
)
def test_a_bad_keyring_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError):
        Keyring.parse(value)


def test_a_webhook_secret_is_32_bytes_and_its_fingerprint_16_hex() -> None:
    secret, other = new_webhook_secret(), new_webhook_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert len(fingerprint(secret)) == 16 and int(fingerprint(secret), 16) >= 0
    assert fingerprint(secret) == fingerprint(secret) != fingerprint(other)


# ---- SSRF guard -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://[::ffff:127.0.0.1]:9/", "http://localhost:9/", "ftp://x/"],
)
async def test_a_private_or_unsendable_target_is_refused(url: str) -> None:
    with pytest.raises(guard.Refused):
        await guard.resolve(url, allow_private=False)


async def test_given_allow_private_then_the_request_is_pinned_to_the_checked_address() -> None:
    target = await guard.resolve("http://localhost:9/p?q=1", allow_private=True)
    assert target.url in ("http://127.0.0.1:9/p?q=1", "http://[::1]:9/p?q=1")
    assert (target.host, target.sni) == ("localhost:9", None)
    assert target.address in target.url


async def test_an_https_target_keeps_its_name_for_tls() -> None:
    target = await guard.resolve("https://localhost/", allow_private=True)
    assert target.url in ("https://127.0.0.1:443/", "https://[::1]:443/")
    assert (target.host, target.sni) == ("localhost", "localhost")


async def test_a_public_literal_needs_no_lookup() -> None:
    target = await guard.resolve("http://93.184.216.34:9/x", allow_private=False)
    assert (target.url, target.host, target.address) == (
        "http://93.184.216.34:9/x",
        "93.184.216.34:9",
        "93.184.216.34",
    )


# ---- router: the subscription's row and delivery ids ---------------------------------------------


def rows(*events: DomainEvent) -> dict[str, Any] | None:
    row = None
    for position, event in enumerate(events, start=1):
        row = endpoint_row(row, envelope(SUB, event, position))
    return row


def test_given_subscribed_then_an_active_row() -> None:
    row = rows(SUBSCRIBED)
    assert row is not None
    assert (row["id"], row["url"], row["event_types"]) == (str(SUB), URL, '["agent.*"]')
    assert (row["status"], row["secret_id"], row["previous_secret_id"]) == ("active", str(S1), None)
    assert (row["position"], row["version"], row["created_position"]) == (1, 1, 1)


def test_given_secret_rotated_then_the_old_secret_is_the_previous_one() -> None:
    ends = T0 + timedelta(hours=1)
    rotated = WebhookSecretRotated(secret_id=S2, secret_fingerprint=FP2, previous_valid_until=ends)
    row = rows(SUBSCRIBED, rotated)
    assert row is not None
    assert (row["secret_id"], row["previous_secret_id"]) == (str(S2), str(S1))
    assert row["previous_valid_until"] == "2026-11-23T11:00:00.000000Z"


@pytest.mark.parametrize(
    ("events", "status", "reason"),
    [
        ([WebhookPaused()], "paused", None),
        ([WebhookPaused(), WebhookResumed()], "active", None),
        ([WebhookDisabled(cause="failures")], "disabled", "failures"),
        ([WebhookDisabled(cause="operator", reason="noisy")], "disabled", "noisy"),
        ([WebhookDisabled(cause="gone"), WebhookEnabled()], "active", None),
        ([WebhookDeleted()], "deleted", None),
    ],
)
def test_given_lifecycle_events_then_the_row_status(
    events: list[DomainEvent], status: str, reason: str | None
) -> None:
    row = rows(SUBSCRIBED, *events)
    assert row is not None
    assert (row["status"], row["disabled_reason"], row["version"]) == (
        status,
        reason,
        1 + len(events),
    )


def test_given_no_row_when_a_later_event_then_none() -> None:
    assert endpoint_row(None, envelope(SUB, WebhookPaused(), 2)) is None


def test_a_delivery_id_is_the_same_for_the_same_pair_and_differs_across_subscriptions() -> None:
    event = UUID(int=0xE1)
    assert delivery_id(str(SUB), event) == delivery_id(str(SUB), str(event))
    assert delivery_id(str(SUB), event) != delivery_id(str(UUID(int=0x5C)), event)
    assert UUID(delivery_id(str(SUB), event))
