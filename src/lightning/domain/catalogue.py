"""The model catalogue: which models each provider offers. Configuration with defaults, not code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_CATALOGUE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "openai": ("gpt-4o", "gpt-4o-mini", "gpt-4-turbo"),
        "anthropic": (
            "claude-3-5-sonnet-20241022",
            "claude-3-5-haiku-20241022",
            "claude-3-opus-20240229",
        ),
        "grok": ("grok-code-fast-1", "grok-beta"),
    }
)

# Highest temperature each provider accepts; the default for others is 2.0.
MAX_TEMPERATURE: Mapping[str, float] = MappingProxyType({"anthropic": 1.0})


@dataclass(frozen=True)
class Catalogue:
    models: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_CATALOGUE)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self.models)

    def offers(self, provider: str, model: str) -> bool:
        return model in self.models.get(provider, ())

    def max_temperature(self, provider: str) -> float:
        return MAX_TEMPERATURE.get(provider, 2.0)
