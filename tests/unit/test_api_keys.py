from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from lightning.domain import api_keys
from lightning.domain.api_keys import (
    ApiKeyExpired,
    ApiKeyIssued,
    ApiKeyPreviousSecretRetired,
    ApiKeyRevoked,
    ApiKeyRotated,
    ExpireApiKey,
    IssueApiKey,
    RetirePreviousSecret,
    RevokeApiKey,
    RotateApiKey,
)
from lightning.domain.errors import Conflict, NotFound, ValidationFailed

KEY = UUID(int=7)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64
ISSUED = ApiKeyIssued(name="ci", role="operator", secret_hash=H1)


def state(*events: api_keys.ApiKeyEvent) -> api_keys.ApiKey | None:
    s = None
    for e in events:
        s = api_keys.evolve(s, e, KEY)
    return s


def when(
    history: list[api_keys.ApiKeyEvent], command: api_keys.ApiKeyCommand
) -> list[api_keys.ApiKeyEvent]:
    return api_keys.decide(command, state(*history))


def test_given_nothing_when_issue_then_issued_with_hash_only() -> None:
    events = when(
        [], IssueApiKey(key_id=KEY, name="ci", role="operator", secret_hash=H1, issued_at=T0)
    )
    assert events == [ISSUED]


def test_given_nothing_when_issue_with_unknown_role_then_refused() -> None:
    with pytest.raises(ValueError):
        IssueApiKey(key_id=KEY, name="ci", role="root", secret_hash=H1, issued_at=T0)  # type: ignore[arg-type]


def test_given_nothing_when_issue_expiring_in_the_past_then_refused() -> None:
    with pytest.raises(ValidationFailed):
        when(
            [],
            IssueApiKey(
                key_id=KEY, name="ci", role="viewer", secret_hash=H1, issued_at=T0, expires_at=T0
            ),
        )


def test_given_issued_when_issue_again_then_conflict() -> None:
    with pytest.raises(Conflict):
        when(
            [ISSUED],
            IssueApiKey(key_id=KEY, name="ci", role="operator", secret_hash=H1, issued_at=T0),
        )


def test_given_issued_when_rotate_then_previous_valid_for_grace() -> None:
    events = when(
        [ISSUED], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0, grace_period=timedelta(hours=1))
    )
    assert events == [ApiKeyRotated(secret_hash=H2, previous_valid_until=T0 + timedelta(hours=1))]


def test_given_issued_when_rotate_without_grace_then_standard_policy_grace() -> None:
    [event] = when([ISSUED], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0))
    assert isinstance(event, ApiKeyRotated)
    assert event.previous_valid_until == T0 + timedelta(days=30)


def test_given_high_security_key_when_rotate_then_seven_days_grace() -> None:
    issued = ApiKeyIssued(name="ci", role="admin", secret_hash=H1, rotation_policy="high_security")
    [event] = when([issued], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0))
    assert isinstance(event, ApiKeyRotated)
    assert event.previous_valid_until == T0 + timedelta(days=7)


def test_given_issued_when_compromised_rotation_then_zero_grace() -> None:
    [event] = when(
        [ISSUED],
        RotateApiKey(
            key_id=KEY, secret_hash=H2, at=T0, grace_period=timedelta(days=3), compromised=True
        ),
    )
    assert isinstance(event, ApiKeyRotated)
    assert event.previous_valid_until == T0


def test_given_rotated_key_then_both_secrets_authenticate_until_grace_ends() -> None:
    s = state(ISSUED, ApiKeyRotated(secret_hash=H2, previous_valid_until=T0 + timedelta(hours=1)))
    assert s is not None
    assert s.authenticates(H2, T0) and s.authenticates(H1, T0)
    assert s.authenticates(H2, T0 + timedelta(hours=2))
    assert not s.authenticates(H1, T0 + timedelta(hours=1))
    assert not s.authenticates(H3, T0)


def test_given_rotated_twice_then_only_the_latest_previous_secret_is_kept() -> None:
    s = state(
        ISSUED,
        ApiKeyRotated(secret_hash=H2, previous_valid_until=T0 + timedelta(days=1)),
        ApiKeyRotated(secret_hash=H3, previous_valid_until=T0 + timedelta(days=1)),
    )
    assert s is not None
    assert s.authenticates(H3, T0) and s.authenticates(H2, T0) and not s.authenticates(H1, T0)


def test_given_revoked_when_rotate_then_conflict() -> None:
    with pytest.raises(Conflict):
        when([ISSUED, ApiKeyRevoked()], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0))


def test_given_expired_by_time_when_rotate_then_conflict() -> None:
    issued = ApiKeyIssued(name="ci", role="viewer", secret_hash=H1, expires_at=T0)
    with pytest.raises(Conflict):
        when([issued], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0 + timedelta(seconds=1)))


def test_given_revoked_when_revoke_twice_then_nothing_new() -> None:
    assert when([ISSUED, ApiKeyRevoked()], RevokeApiKey(key_id=KEY)) == []


def test_given_revoked_key_then_nothing_authenticates() -> None:
    s = state(ISSUED, ApiKeyRevoked())
    assert s is not None and not s.authenticates(H1, T0)


def test_given_rotated_when_retire_previous_then_retired_and_twice_is_nothing() -> None:
    history: list[api_keys.ApiKeyEvent] = [
        ISSUED,
        ApiKeyRotated(secret_hash=H2, previous_valid_until=T0 + timedelta(days=1)),
    ]
    assert when(history, RetirePreviousSecret(key_id=KEY, at=T0)) == [ApiKeyPreviousSecretRetired()]
    history.append(ApiKeyPreviousSecretRetired())
    assert when(history, RetirePreviousSecret(key_id=KEY, at=T0)) == []
    s = state(*history)
    assert s is not None and not s.authenticates(H1, T0)


def test_given_key_past_expiry_when_expire_then_expired() -> None:
    issued = ApiKeyIssued(name="ci", role="viewer", secret_hash=H1, expires_at=T0)
    assert when([issued], ExpireApiKey(key_id=KEY, at=T0)) == [ApiKeyExpired()]


def test_given_key_not_due_when_expire_then_conflict() -> None:
    with pytest.raises(Conflict):
        when([ISSUED], ExpireApiKey(key_id=KEY, at=T0))


def test_given_nothing_when_rotate_then_not_found() -> None:
    with pytest.raises(NotFound):
        when([], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0))


def test_grace_longer_than_a_year_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        when(
            [ISSUED],
            RotateApiKey(key_id=KEY, secret_hash=H2, at=T0, grace_period=timedelta(days=400)),
        )


def test_given_rotated_when_the_same_rotation_is_retried_then_nothing_new() -> None:
    rotated = ApiKeyRotated(secret_hash=H2, previous_valid_until=T0 + timedelta(hours=1))
    assert when([ISSUED, rotated], RotateApiKey(key_id=KEY, secret_hash=H2, at=T0)) == []


POLICY_ISSUED = ApiKeyIssued(name="ci", role="operator", secret_hash=H1, rotation_policy="standard")


def test_given_a_policy_when_rotation_due_then_the_notice_stands_until_rotated() -> None:
    due = T0 + timedelta(days=90)
    notice = api_keys.NoteRotationDue(key_id=KEY, cycle=1, due_at=due)
    noted = when([POLICY_ISSUED], notice)
    assert noted == [api_keys.ApiKeyRotationDue(due_at=due, policy="standard")]
    assert when([POLICY_ISSUED, *noted], notice) == []  # it stands already
    s = state(POLICY_ISSUED, *noted)
    assert s is not None and s.rotation_due_at == due
    rotated = ApiKeyRotated(secret_hash=H2, previous_valid_until=T0)
    s = state(POLICY_ISSUED, *noted, rotated)
    assert s is not None and s.rotation_due_at is None and s.cycle == 3
    # the notice of the cycle the rotation ended changes nothing
    assert when([POLICY_ISSUED, *noted, rotated], notice) == []


def test_given_no_policy_or_revoked_when_rotation_due_then_nothing() -> None:
    notice = api_keys.NoteRotationDue(key_id=KEY, cycle=1, due_at=T0)
    assert when([ISSUED], notice) == []
    assert when([POLICY_ISSUED, ApiKeyRevoked()], notice) == []


def test_given_rotated_twice_when_the_first_grace_ends_then_the_newer_previous_stays() -> None:
    history: list[api_keys.ApiKeyEvent] = [
        ISSUED,
        ApiKeyRotated(secret_hash=H2, previous_valid_until=T0),
        ApiKeyRotated(secret_hash=H3, previous_valid_until=T0 + timedelta(days=1)),
    ]
    assert when(history, RetirePreviousSecret(key_id=KEY, at=T0, cycle=2)) == []
    assert when(history, RetirePreviousSecret(key_id=KEY, at=T0, cycle=3)) == [
        ApiKeyPreviousSecretRetired()
    ]
