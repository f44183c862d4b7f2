"""Settings (environment prefix ``LIGHTNING_``), read by the composition root, never at import."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///lightning.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIGHTNING_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="sqlite:///path (embedded default) or postgresql://user@host:port/db",
    )
    amqp_url: str | None = Field(default=None, description="amqp://…; unset = in-process bus")
    admin_secret: SecretStr | None = Field(
        default=None, description="bootstrap credential accepted as an admin bearer token"
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="key-id:base64-of-32-bytes, comma-separated: the first encrypts, all decrypt",
    )
    webhook_allow_private: bool = Field(
        default=False, description="allow webhook URLs on loopback and private networks"
    )
    webhook_retry_schedule: str = Field(
        default="5s,5m,30m,2h,5h,10h,10h",
        description="delays between a delivery's attempts (units ms, s, m, h, d)",
    )
    webhook_timeout: float = Field(
        default=15.0, gt=0, le=120, description="seconds an attempt may take in all"
    )
    webhook_concurrency: int = Field(
        default=4, ge=1, le=64, description="attempts in flight per subscription"
    )
    webhook_disable_after: float = Field(
        default=5 * 86400.0,
        gt=0,
        description="seconds a subscription may fail without a success before it is disabled",
    )
    webhook_poll: float = Field(
        default=0.5, gt=0, le=60, description="seconds between looks for due retries"
    )
    model_catalogue: dict[str, list[str]] | None = Field(
        default=None,
        description="provider -> models, as JSON; unset = the defaults of DESIGN §4",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    consistency_timeout: float = Field(
        default=5.0, description="seconds a query with consistentWith waits for the read models"
    )
    max_batch_events: int = Field(default=1000, description="group-commit batch ceiling")
    postgres_pool_size: int = 10
    exchange: str = Field(default="lightning.events", description="topic exchange for events")
    queue_prefix: str = Field(default="lightning", description="prefix of consumer queue names")
    prefetch: int = Field(default=1000, description="unacknowledged messages per consumer")
    delivery_limit: int = Field(
        default=5, description="deliveries of one message before it is dead-lettered"
    )
    relay_batch: int = Field(default=500, description="events the relay publishes per confirm")
    consumer_retries: int = Field(
        default=5, ge=0, le=100, description="retries of an event a handler fails on, then parked"
    )
    consumer_retry_delay: float = Field(
        default=0.1, gt=0, le=60, description="seconds before the first retry (doubled each time)"
    )
    graphql_max_depth: int = Field(default=12, ge=1, le=100, description="nested fields")
    graphql_max_tokens: int = Field(default=5_000, ge=100, le=1_000_000)
    graphql_max_aliases: int = Field(default=30, ge=0, le=10_000)
    graphql_max_cost: int = Field(
        default=10_000, ge=1, description="each field 1; first: n multiplies what it pages by n"
    )
    graphql_max_mutations: int = Field(default=10, ge=1, le=1_000, description="per request")
    websockets_per_credential: int = Field(default=10, ge=1, le=10_000)
    websocket_operations: int = Field(
        default=20, ge=1, le=10_000, description="operations at once on one websocket"
    )
    subscription_queue: int = Field(
        default=1000,
        ge=10,
        le=100_000,
        description="events one live subscription may fall behind before its socket is closed",
    )

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    @property
    def is_distributed(self) -> bool:
        return self.amqp_url is not None
