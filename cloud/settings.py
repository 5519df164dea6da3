"""Service configuration: one pydantic-settings class read from ``QADAM_*`` environment variables.

Invalid values fail at construction (fail fast), not when first used.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QADAM_",
        extra="forbid",  # a misspelt keyword argument is an error, not silently ignored
        frozen=True,
        validate_default=True,
    )

    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/qadam", min_length=1)

    mqtt_host: str = Field(default="127.0.0.1", min_length=1)
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_user: str | None = None
    mqtt_password: str | None = None
    topic_prefix: str = Field(default="qadam", min_length=1, pattern=r"^[^#+/\x00][^#+\x00]*$")
    ingest_client_id: str = Field(default="qadam-ingest", min_length=1, max_length=128)

    http_host: str = Field(default="127.0.0.1", min_length=1)
    http_port: int = Field(default=8000, ge=1, le=65535)

    ingest_batch_max: int = Field(default=500, ge=1, le=100_000)
    ingest_flush_ms: int = Field(default=50, ge=0, le=60_000)
    ingest_queue_max: int = Field(default=10_000, ge=1)
    # Several workers: the same group name on each, a distinct ingest_client_id per worker.
    # None = a plain subscription (one worker).
    ingest_shared_group: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"
    )
    ingest_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    ingest_metrics_port: int = Field(default=0, ge=0, le=65535)  # 0 = no metrics endpoint

    # API authentication (D8). False keeps GET /api/v1/events open without a token for the
    # demo and the live page (logged loudly at start-up); production sets QADAM_AUTH_REQUIRED=1.
    auth_required: bool = False
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
