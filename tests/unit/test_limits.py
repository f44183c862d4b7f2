"""DESIGN §6 input limits: given/when/then on the commands; events read back are never held to
them."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from lightning.domain import agents, api_keys
from lightning.domain.agents import AgentReconfigured, AgentRegistered, ReconfigureAgent
from lightning.domain.catalogue import Catalogue
from lightning.domain.errors import ValidationFailed
from lightning.domain.limits import check_event_size, check_time

from .given import given

AGENT = UUID("00000000-0000-0000-0000-00000000000a")
KEY = UUID("00000000-0000-0000-0000-00000000000b")
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
BASE = {"agent_id": AGENT, "name": "coder", "provider": "grok", "model": "grok-code-fast-1"}


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("name", "n" * 101, "name"),
        ("name", "a\x00b", "name"),
        ("name", "a\u202eb", "name"),  # right-to-left override: a format character
        ("description", "d" * 2_001, "description"),
        ("description", "nul\x00", "description"),
        ("system_prompt", "é" * 16_385, "systemPrompt"),  # 32,770 bytes in UTF-8
        ("system_prompt", "bell\x07", "systemPrompt"),
        ("tools", tuple(f"t{i}" for i in range(65)), "tools"),
        ("tools", ("t" * 129,), "tools.0"),
        ("tools", ("ok", "tab\there"), "tools.1"),
        ("provider", "p" * 101, "provider"),
    ],
)
def test_when_register_beyond_a_limit_then_refused_naming_the_field(
    field: str, value: object, key: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        agents.RegisterAgent.of(**BASE | {field: value})
    assert key in raised.value.details
    assert "\x00" not in raised.value.message  # the input is never echoed


def test_when_register_at_the_limits_then_accepted() -> None:
    command = agents.RegisterAgent.of(
        **BASE | {"name": "n" * 100},
        description="line one\n\tline two" + "d" * 1_980,
        system_prompt="é" * 16_384,
        tools=tuple(f"tool-{i}" for i in range(64)),
    )
    assert agents.decide(command, None, Catalogue())


def test_when_reconfigure_beyond_a_limit_then_refused() -> None:
    with pytest.raises(ValidationFailed) as raised:
        ReconfigureAgent.of(agent_id=AGENT, description="x\x00")
    assert "description" in raised.value.details


def test_given_an_old_agent_beyond_todays_limits_when_reconfigured_then_only_the_change_is_checked() -> (
    None
):
    old = AgentRegistered(
        name="old",
        description="nul\x00kept",
        provider="grok",
        model="grok-code-fast-1",
        temperature=0.2,
        max_tokens=4096,
        system_prompt="p" * 40_000,
        tools=tuple(f"t{i}" for i in range(128)),
    )
    state = given([old], lambda s, e: agents.evolve(s, e, AGENT))
    events = agents.decide(ReconfigureAgent.of(agent_id=AGENT, temperature=0.5), state, Catalogue())
    assert events == [AgentReconfigured(config_version=2, temperature=0.5)]


def _issue(**overrides: object) -> api_keys.IssueApiKey:
    fields: dict[str, object] = {
        "key_id": KEY,
        "name": "ci",
        "role": "viewer",
        "secret_hash": "0" * 64,
        "issued_at": NOW,
    }
    return api_keys.IssueApiKey.of(**(fields | overrides))


@pytest.mark.parametrize(
    "expires_at",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime.max.replace(tzinfo=UTC) - timedelta(days=1),
        NOW + timedelta(days=3654),
        NOW - timedelta(seconds=1),
        NOW,
    ],
)
def test_when_issue_with_expiry_out_of_range_then_refused(expires_at: datetime) -> None:
    with pytest.raises(ValidationFailed) as raised:
        api_keys.decide(_issue(expires_at=expires_at), None)
    assert "expiresAt" in raised.value.details


def test_when_issue_expiring_within_ten_years_then_issued_in_utc() -> None:
    [event] = api_keys.decide(_issue(expires_at=NOW + timedelta(days=3652)), None)
    assert isinstance(event, api_keys.ApiKeyIssued)
    assert event.expires_at == NOW + timedelta(days=3652)


def test_when_revoke_with_a_control_character_in_the_reason_then_refused() -> None:
    with pytest.raises(ValidationFailed):
        api_keys.RevokeApiKey.of(key_id=KEY, reason="gone\x00")
    assert api_keys.RevokeApiKey.of(key_id=KEY, reason="leaked\nin a log").reason


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-12:00",  # the year 10000 in UTC
        "0001-01-01T00:00:00+14:00",  # the year 0 in UTC
        "1969-12-31T23:59:59+00:00",
        "3000-01-01T00:00:00+00:00",
    ],
)
def test_a_time_outside_1970_to_2999_in_utc_is_refused(value: str) -> None:
    with pytest.raises(ValidationFailed):
        check_time(datetime.fromisoformat(value), "since")


def test_a_time_without_zone_is_utc() -> None:
    assert check_time(datetime(2026, 1, 1), "asOf") == datetime(2026, 1, 1, tzinfo=UTC)


def test_event_data_over_256_kib_is_refused() -> None:
    check_event_size("agent.registered", b"x" * 256 * 1024)
    with pytest.raises(ValidationFailed):
        check_event_size("agent.registered", b"x" * (256 * 1024 + 1))
