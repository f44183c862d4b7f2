"""The sender: works through the delivery records, beside the webhook consumer.

It runs an asyncio loop on a thread of its own (in ``lightning worker webhooks``, or in the
embedded server). Each round it claims, per active subscription, due deliveries for that
subscription's free slots (``webhook_concurrency``): first attempts one at a time, in position
order (a receiver sees a healthy subscription's events in log order), retries beside them in
the other slots. A slow or dead endpoint holds only its own slots and never delays another's
deliveries. Every attempt:

1. reads the event from the log and the subscription's signing secrets from the vault;
2. resolves and checks the URL's address (``guard.py``) and sends the Standard Webhooks request
   to that address, within a total deadline (15 s), reading at most 64 KiB of the response;
3. records the attempt and the delivery's next state in one transaction (``deliveries.py``):
   a 2xx succeeds (a key's delivered secret is erased with it); anything else is tried again on
   the schedule (with jitter; a 429 or 503's Retry-After instead), until the round runs out;
4. a 410 disables the subscription; so does failing continuously for ``disable_after`` (the
   circuit breaker), as a ``webhook.disabled`` event.

It is woken when the webhook consumer commits, and otherwise looks every ``poll`` seconds
(retries come due, an operator re-armed a delivery in another process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from ..domain.errors import LightningError
from ..store.backends import Row
from ..store.envelope import format_time
from ..store.event_store import EventStore
from ..store.secrets import SecretVault
from . import guard, signing
from .deliveries import RESPONSE_KEPT, Attempt, Deliveries
from .schedule import Schedule, retry_after

log = logging.getLogger(__name__)

RESPONSE_READ_MAX = 64 * 1024
LANE_BATCH = 20  # first attempts one claim leases (sent one after another)


@dataclass(frozen=True)
class SenderConfig:
    schedule: Schedule
    timeout: float = 15.0
    concurrency: int = 4  # attempts in flight per subscription (one of them a first attempt)
    max_in_flight: int = 256  # in all
    disable_after: float = 5 * 86400.0  # seconds failing without a success
    allow_private: bool = False
    poll: float = 0.5

    @property
    def lease(self) -> float:
        return self.timeout + 15.0


# (subscription id, cause, reason): sends webhook.disabled.
Disabler = Callable[[str, str, str], None]


@dataclass(frozen=True)
class _Prepared:
    url: str
    body: bytes
    secrets: list[str]
    message_id: str
    key_secret_id: str | None


class Sender:
    def __init__(
        self,
        store: EventStore,
        vault: SecretVault,
        config: SenderConfig,
        disable: Disabler,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.vault = vault
        self.deliveries = Deliveries(store.backend)
        self.config = config
        self.disable = disable
        self.clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None
        self._in_flight: dict[str, int] = defaultdict(int)
        self._first_in_flight: set[str] = set()  # subscriptions with a first attempt out
        self._tasks: set[asyncio.Task[None]] = set()
        # https connections are kept per name: a pool keyed by address alone would let a
        # connection opened (and its certificate checked) for one name carry another's requests.
        self._tls: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        # Signing secrets opened once (they never change under their id); a key's delivered
        # secret is read every time (it is erased once delivered).
        self._signing: OrderedDict[UUID, str] = OrderedDict()

    def wake(self) -> None:
        """Look for due deliveries now (thread-safe)."""
        loop, woken = self._loop, self._woken
        if loop is not None and woken is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(woken.set)

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        async with self._client() as client:
            while not stop.is_set():
                self._woken.clear()
                try:
                    await self._round(client)
                except Exception:  # an outage: the next round tries again
                    log.warning("webhook sender round failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.config.poll)
            await self._stop_tasks()
            for tls in self._tls.values():
                await tls.aclose()
            self._tls.clear()
        self._loop = None

    def _client(self, connections: int | None = None) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=connections or self.config.max_in_flight,
            max_keepalive_connections=min(64, connections or self.config.max_in_flight),
        )
        return httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.config.timeout),
            limits=limits,
            trust_env=False,  # no proxy from the environment: the pinned address is the peer
        )

    async def _client_for(
        self, target: guard.Target, shared: httpx.AsyncClient
    ) -> httpx.AsyncClient:
        if target.sni is None:
            return shared
        client = self._tls.get(target.sni)
        if client is None:
            client = self._tls[target.sni] = self._client(self.config.concurrency * 2)
            while len(self._tls) > 256:
                _, evicted = self._tls.popitem(last=False)
                await evicted.aclose()
        self._tls.move_to_end(target.sni)
        return client

    async def _round(self, client: httpx.AsyncClient) -> None:
        now = self.clock()
        due = await asyncio.to_thread(self.deliveries.due, now)
        for endpoint in due:
            key = endpoint["id"]
            room = min(
                self.config.concurrency - self._in_flight[key],
                self.config.max_in_flight - len(self._tasks),
            )
            if room > 0 and endpoint["first"] and key not in self._first_in_flight:
                batch = await asyncio.to_thread(self._claim, key, now, LANE_BATCH, True)
                if batch:
                    self._start(client, batch, first=True)
                    room -= 1
            if room > 0 and endpoint["again"]:
                claimed = await asyncio.to_thread(self._claim, key, now, room, False)
                for delivery in claimed:
                    self._start(client, [delivery], first=False)

    def _claim(self, subscription: str, now: datetime, limit: int, first: bool) -> list[Row]:
        return self.deliveries.claim(
            subscription,
            now,
            limit,
            self.config.lease,
            first=first,
            concurrency=self.config.concurrency,
        )

    def _start(self, client: httpx.AsyncClient, claimed: list[Row], *, first: bool) -> None:
        """One task: a lane of first attempts, or one retry."""
        subscription = claimed[0]["subscription_id"]
        self._in_flight[subscription] += 1
        if first:
            self._first_in_flight.add(subscription)
        work = self._lane(client, claimed) if first else self._attempt(client, claimed[0])
        task = asyncio.ensure_future(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._in_flight[subscription] -= 1
            if first:
                self._first_in_flight.discard(subscription)
            if self._woken is not None:
                self._woken.set()  # a slot is free: claim the next

        task.add_done_callback(done)

    async def _stop_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _lane(self, client: httpx.AsyncClient, batch: list[Row]) -> None:
        """A subscription's first attempts, one after another in position order: a batch is
        claimed at once (the claim and the reads of the events shared by all of it), each
        recorded attempt renews the leases of the rest, and the next batch follows at once
        while they keep coming."""
        subscription = batch[0]["subscription_id"]
        while batch:
            await asyncio.to_thread(self._attach, batch)
            for n, delivery in enumerate(batch):
                try:
                    await self._attempt(client, delivery, renew=batch[n + 1 :])
                except asyncio.CancelledError:
                    for rest in batch[n + 1 :]:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(
                                asyncio.to_thread(
                                    self.deliveries.release, rest["id"], rest["leased_until"]
                                )
                            )
                    raise
            batch = await asyncio.to_thread(
                self._claim, subscription, self.clock(), LANE_BATCH, True
            )

    def _attach(self, batch: list[Row]) -> None:
        """Read the batch's events, and its subscription, once for all of it."""
        found = {e.position: e for e in self.store.read_at([int(d["position"]) for d in batch])}
        rows = self.store.backend.query(
            "SELECT url, secret_id, previous_secret_id, previous_valid_until"
            " FROM webhook_endpoints WHERE id = ?",
            (batch[0]["subscription_id"],),
        )
        for delivery in batch:
            delivery["_envelope"] = found.get(int(delivery["position"]))
            delivery["_endpoint"] = rows[0] if rows else None

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: Row, renew: list[Row] | None = None
    ) -> None:
        try:
            await self._send_and_record(client, delivery, renew or [])
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    asyncio.to_thread(
                        self.deliveries.release, delivery["id"], delivery["leased_until"]
                    )
                )
            raise
        except Exception:  # recording failed (an outage): the lease runs out, it goes again
            log.warning("webhook delivery %s: attempt not recorded", delivery["id"], exc_info=True)

    async def _send_and_record(
        self, client: httpx.AsyncClient, delivery: Row, renew: list[Row]
    ) -> None:
        started, at = time.perf_counter(), self.clock()
        status: int | None = None
        error: str | None = None
        response_text: str | None = None
        wait: float | None = None
        prepared: _Prepared | None = None
        try:
            prepared = await asyncio.to_thread(self._prepare, delivery, at)
            status, response_text, wait = await self._send(client, prepared)
        except guard.Refused as exc:
            error = f"refused: {exc}"
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            error = _describe(exc, self.config.timeout)
        except (_Unsendable, LightningError) as exc:  # a secret no key opens, say
            error = str(exc)
        except Exception as exc:  # anything else about this attempt is its failure, recorded
            log.warning("webhook delivery %s: attempt failed", delivery["id"], exc_info=True)
            error = f"{type(exc).__name__}: {exc}"[:500]
        latency = (time.perf_counter() - started) * 1000
        attempt = Attempt(
            delivery_id=delivery["id"],
            subscription_id=delivery["subscription_id"],
            attempt=int(delivery["attempts"]) + 1,
            at=at,
            latency_ms=latency,
            status_code=status,
            error=error,
            response=response_text,
        )
        gone = status == 410
        made = int(delivery["round_attempts"]) + 1
        delay = None if gone or attempt.succeeded else self.config.schedule.next_delay(made, wait)
        next_at = None if delay is None else self.clock() + timedelta(seconds=delay)
        key_secret = prepared.key_secret_id if prepared else delivery["secret_id"]
        renewed = format_time(self.clock() + timedelta(seconds=self.config.lease))
        endpoint = await asyncio.to_thread(
            functools.partial(
                self.deliveries.record,
                attempt,
                lease=delivery["leased_until"],
                next_at=next_at,
                erase_secret=key_secret,
                renew=[(r["id"], r["leased_until"]) for r in renew],
                renewed=renewed,
            )
        )
        for rest in renew:
            rest["leased_until"] = renewed
        if attempt.succeeded or endpoint is None or endpoint["status"] != "active":
            return
        if gone:
            await asyncio.to_thread(
                self.disable, attempt.subscription_id, "gone", "the endpoint answered 410 Gone"
            )
        elif endpoint["failing_since"] is not None:
            since = datetime.fromisoformat(endpoint["failing_since"].replace("Z", "+00:00"))
            if (self.clock() - since).total_seconds() >= self.config.disable_after:
                reason = f"failing since {endpoint['failing_since']} ({attempt.error or status})"
                await asyncio.to_thread(self.disable, attempt.subscription_id, "failures", reason)

    def _prepare(self, delivery: Row, now: datetime) -> _Prepared:
        if "_envelope" not in delivery:  # a retry: read here (a lane's batch read them ahead)
            self._attach([delivery])
        endpoint, envelope = delivery["_endpoint"], delivery["_envelope"]
        if endpoint is None or envelope is None:
            raise _Unsendable("the subscription or the event is gone")
        signing_ids = [endpoint["secret_id"]]
        until = endpoint["previous_valid_until"]
        if endpoint["previous_secret_id"] and until and format_time(now) < until:
            signing_ids.append(endpoint["previous_secret_id"])
        key_secret_id = delivery["secret_id"]
        missing = [UUID(i) for i in signing_ids if UUID(i) not in self._signing]
        wanted = missing + ([UUID(key_secret_id)] if key_secret_id else [])
        opened = self.vault.read(wanted) if wanted else {}
        for secret_id in missing:
            if secret_id in opened:
                self._signing[secret_id] = opened[secret_id]
                while len(self._signing) > 1024:
                    self._signing.popitem(last=False)
        secrets = [self._signing[UUID(i)] for i in signing_ids if UUID(i) in self._signing]
        if not secrets:
            raise _Unsendable("the subscription's signing secret is gone")
        extra: dict[str, Any] = {}
        if key_secret_id and UUID(key_secret_id) in opened:
            extra["secret"] = opened[UUID(key_secret_id)]
        body = signing.body(
            envelope.type, format_time(envelope.occurred_at), envelope.public(), **extra
        )
        return _Prepared(
            url=endpoint["url"],
            body=body,
            secrets=secrets,
            message_id="msg_" + UUID(delivery["id"]).hex,
            key_secret_id=key_secret_id if "secret" in extra else None,
        )

    async def _send(
        self, client: httpx.AsyncClient, prepared: _Prepared
    ) -> tuple[int, str, float | None]:
        async with asyncio.timeout(self.config.timeout):
            target = await guard.resolve(prepared.url, allow_private=self.config.allow_private)
            headers = signing.headers(
                prepared.message_id, int(time.time()), prepared.secrets, prepared.body
            )
            headers["host"] = target.host
            extensions = {"sni_hostname": target.sni} if target.sni else {}
            client = await self._client_for(target, client)
            async with client.stream(
                "POST", target.url, content=prepared.body, headers=headers, extensions=extensions
            ) as response:
                read = bytearray()
                async for chunk in response.aiter_raw():
                    read += chunk
                    if len(read) >= RESPONSE_READ_MAX:
                        break
        text = read[:RESPONSE_KEPT].decode(errors="replace").replace("\x00", "\ufffd")
        wait = None
        if response.status_code in (429, 503):
            wait = retry_after(response.headers.get("retry-after"))
        return response.status_code, text, wait


class _Unsendable(Exception):
    """The delivery cannot be sent as it stands (recorded as the attempt's error)."""


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no response within {timeout:g} s"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out: {type(exc).__name__}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
