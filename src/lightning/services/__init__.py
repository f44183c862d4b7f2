"""Application services: command handlers (load → decide → append) and authentication."""

from .agents import AgentResult, AgentService
from .api_keys import ApiKeyService, KeyResult, hash_secret
from .common import SYSTEM, Context, Principal
from .consumers import ConsumerLogService

__all__ = [
    "SYSTEM",
    "AgentResult",
    "AgentService",
    "ApiKeyService",
    "ConsumerLogService",
    "Context",
    "KeyResult",
    "Principal",
    "hash_secret",
]
