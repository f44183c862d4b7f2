"""The one consumer mechanism (DESIGN §1, §2): tracking, catch-up from the store, the loops that
apply deliveries (in-process and AMQP), batching, retries and parking, heartbeats and status.
Every consumer kind (projection builders, sagas, webhooks) is built on it; it names none of them.
"""

from .consumer import HEARTBEAT_SECONDS, Consumer, RetryPolicy
from .handler import ConsumerKind, Handler
from .operations import RetryResult
from .parking import ParkedEvent, ParkedFilter
from .rebuild import BATCH as REBUILD_BATCH
from .rebuild import Rebuilt, run_to_head
from .runtime import Consumers
from .status import HandlerStatus
from .tracking import TrackingStore, open_tracking_store
from .waiting import Progress

__all__ = [
    "HEARTBEAT_SECONDS",
    "REBUILD_BATCH",
    "Consumer",
    "ConsumerKind",
    "Consumers",
    "Handler",
    "HandlerStatus",
    "ParkedEvent",
    "ParkedFilter",
    "Progress",
    "Rebuilt",
    "RetryPolicy",
    "RetryResult",
    "TrackingStore",
    "open_tracking_store",
    "run_to_head",
]
