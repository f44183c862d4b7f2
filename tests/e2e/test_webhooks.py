"""Webhooks as an integrator and an operator meet them: GraphQL over HTTP against the real
server (embedded and distributed) with an operator's API key, a loopback receiver verifying
with the Standard Webhooks reference library, the CLI."""

from __future__ import annotations

import json
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from ..integration.webhook_support import Receiver, eventually
from .conftest import Server
from .test_graphql import GROK, REGISTER

SUBSCRIBE = """
mutation($input: SubscribeWebhookInput!) {
  subscribeWebhook(input: $input) { secret position subscription { id url eventTypes status } }
}"""
DELIVERIES = """
query($sub: ID, $status: WebhookDeliveryStatus) {
  webhookDeliveries(subscriptionId: $sub, status: $status, first: 50) {
    edges { node { id eventId position eventType status attemptCount nextAttemptAt
      attempts { attempt at statusCode latencyMs error } } }
  }
}"""
ISSUE = """
mutation($input: IssueApiKeyInput!) {
  issueApiKey(input: $input) { secret apiKey { id role deliverTo } }
}"""


def key(server: Server, role: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    issued = server.data(ISSUE, {"input": {"name": f"{role}-key", "role": role, **extra}})
    return issued["issueApiKey"]["secret"], issued["issueApiKey"]["apiKey"]


def deliveries(server: Server, sub: str, token: str, status: str | None = None) -> list[Any]:
    found = server.data(DELIVERIES, {"sub": sub, "status": status}, token)
    return [e["node"] for e in found["webhookDeliveries"]["edges"]]


def test_an_integration_receives_verified_events_and_an_operator_manages_them(
    server: Server, receiver: Receiver
) -> None:
    operator, _ = key(server, "operator")
    viewer, _ = key(server, "viewer")
    variables = {"input": {"url": receiver.url(), "eventTypes": ["agent.*"], "commandId": "s1"}}
    refused = server.error(SUBSCRIBE, variables, viewer)
    assert refused["extensions"]["code"] == "FORBIDDEN"
    made = server.data(SUBSCRIBE, variables, operator)["subscribeWebhook"]
    secret, sub = made["secret"], made["subscription"]["id"]
    assert secret.startswith("whsec_") and made["subscription"]["status"] == "ACTIVE"
    again = server.data(SUBSCRIBE, variables, operator)["subscribeWebhook"]
    assert again["secret"] is None and again["subscription"]["id"] == sub  # shown once
    receiver.secrets.append(secret)
    bad = server.error(
        SUBSCRIBE, {"input": {"url": "ftp://example.com", "eventTypes": ["*"]}}, operator
    )
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"

    registered = server.data(REGISTER, {"input": GROK | {"name": "hooked"}}, operator)
    [got] = eventually(lambda: receiver.at(), what="the delivery")
    payload = Webhook(secret).verify(got.body, got.headers)  # the reference library
    history = server.data(
        "query($id: ID!) { history(aggregateId: $id) { position type data } }",
        {"id": registered["registerAgent"]["agent"]["id"]},
        operator,
    )["history"]
    assert payload["type"] == "agent.registered"
    assert payload["data"]["position"] == history[0]["position"]
    assert payload["data"]["data"] == history[0]["data"]

    [delivery] = eventually(lambda: deliveries(server, sub, viewer, "SUCCEEDED"))
    assert delivery["attempts"][0]["statusCode"] == 200
    assert got.id == "msg_" + delivery["id"].replace("-", "")
    listed = server.data(
        "{ webhookSubscriptions { edges { node { id url status secretFingerprint } } } }",
        token=viewer,
    )["webhookSubscriptions"]["edges"]
    assert [e["node"]["id"] for e in listed] == [sub]

    redelivered = server.data(
        "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { deliveryId } }",
        {"id": delivery["id"]},
        operator,
    )
    assert redelivered["redeliverWebhook"]["deliveryId"] == delivery["id"]
    eventually(lambda: len(receiver.at()) == 2, what="the redelivery")
    recovered = server.data(
        "mutation($s: ID!, $p: Int!) { recoverWebhooks(subscriptionId: $s, since: $p)"
        " { deliveries nextSince } }",
        {"s": sub, "p": 0},
        operator,
    )["recoverWebhooks"]
    assert recovered == {"deliveries": 1, "nextSince": None}  # agent_name.* is not agent.*
    eventually(lambda: len(receiver.at()) >= 3, what="the recovered delivery")

    paused = server.data(
        "mutation($id: ID!) { updateWebhookSubscription(id: $id, paused: true)"
        " { position subscription { status } } }",
        {"id": sub},
        operator,
    )["updateWebhookSubscription"]
    assert paused["subscription"]["status"] == "PAUSED"
    rotated = server.data(
        "mutation($id: ID!) { rotateWebhookSecret(id: $id, gracePeriodSeconds: 60)"
        " { secret subscription { previousSecretValidUntil } } }",
        {"id": sub},
        operator,
    )["rotateWebhookSecret"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret

    # An API key may name the subscription that receives its automatic rotations.
    _, auto = key(server, "viewer", rotationPolicy="standard", deliverTo=sub)
    assert auto["deliverTo"] == sub
    missing = server.error(
        ISSUE,
        {
            "input": {
                "name": "x",
                "role": "viewer",
                "rotationPolicy": "standard",
                "deliverTo": "00000000-0000-0000-0000-000000000000",
            }
        },
    )
    assert missing["extensions"]["code"] == "NOT_FOUND"

    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'lightning_webhook_deliveries{status="SUCCEEDED"}' in metrics
    assert "lightning_webhook_attempt_duration_seconds_bucket" in metrics

    # The same from the CLI.
    listed_cli = server.cli("webhooks", "list", "--json")
    assert listed_cli.returncode == 0, listed_cli.stderr
    assert json.loads(listed_cli.stdout.splitlines()[0])["id"] == sub
    shown = server.cli("webhooks", "deliveries", sub)
    assert shown.returncode == 0 and delivery["id"] in shown.stdout and "200" in shown.stdout
    again_cli = server.cli("webhooks", "redeliver", delivery["id"])
    assert again_cli.returncode == 0, again_cli.stderr
    recover_cli = server.cli("webhooks", "recover", sub, "--since", "0")
    assert recover_cli.returncode == 0 and "deliveries re-armed" in recover_cli.stdout
    unknown = server.cli("webhooks", "redeliver", "00000000-0000-0000-0000-000000000001")
    assert unknown.returncode == 3 and "NOT_FOUND" in unknown.stderr
    reencrypt = server.cli("keys", "reencrypt")
    assert reencrypt.returncode == 0 and "re-encrypted 0 secret(s)" in reencrypt.stderr
