from __future__ import annotations

from collections.abc import Iterator

import pytest

from lightning.bootstrap import Lightning
from lightning.config import Settings

from .cluster import cluster  # noqa: F401 (the distributed tests' fixture)
from .webhook_support import receiver  # noqa: F401 (the webhook tests' fixture)


@pytest.fixture
def lightning(database_url: str) -> Iterator[Lightning]:
    """Lightning on the given backend, with no workers running (tests drive consumers); a
    failing event is retried twice, a millisecond apart, then parked."""
    app = Lightning.open(
        Settings(
            database_url=database_url,
            amqp_url=None,
            consumer_retries=2,
            consumer_retry_delay=0.001,
            _env_file=None,
        )
    )
    try:
        yield app
    finally:
        app.close()
