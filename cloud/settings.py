"""Service configuration: one pydantic-settings class read from ``QADAM_*`` environment variables.

Invalid values fail at construction (fail fast), not when first used.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Web Push services of the browsers and phones parents use (Chrome/Android, Firefox, Edge,
# Safari/iOS).
PUSH_SERVICES = (
    "fcm.googleapis.com",
    "push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
)


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
    # Writer threads, each with its own database connection; a board's messages always go to
    # the same one (D18). More than the database's cores only adds contention.
    ingest_writers: int = Field(default=2, ge=1, le=16)
    # A flush of at least this many events goes into events by COPY (D18, a replay); smaller
    # ones by the insert statement.
    ingest_bulk_min: int = Field(default=1_000, ge=1)
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

    # Device provisioning (docs/provisioning.md). mqtt_dynsec=True: per-board broker accounts and
    # ACLs through Mosquitto's dynamic-security plugin, managed as mqtt_admin_user. False (demo):
    # credentials are still issued, and the broker is logged as open.
    mqtt_dynsec: bool = False
    mqtt_admin_user: str | None = Field(default=None, min_length=1)
    mqtt_admin_password: str | None = None
    device_mqtt_host: str | None = Field(default=None, min_length=1)  # for boards; else mqtt_host
    device_mqtt_port: int | None = Field(default=None, ge=1, le=65535)  # else mqtt_port
    claim_token_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # Whitelist distribution (cloud/workers/whitelist_push.py)
    whitelist_keep: int = Field(default=10, ge=2, le=1000)  # versions kept per school
    whitelist_poll_ms: int = Field(default=500, ge=20, le=60_000)
    whitelist_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    # Canteen balance pushes (cloud/workers/balance_push.py, D15): a school marked dirty is
    # pushed once its first mark is balance_debounce_ms old, so a burst of charges is one push.
    balance_poll_ms: int = Field(default=250, ge=20, le=60_000)
    balance_debounce_ms: int = Field(default=1000, ge=0, le=600_000)
    balance_client_id: str | None = Field(default=None, min_length=1, max_length=128)

    # Outbox delivery (cloud/workers/outbox.py). The lease must outlast one delivery
    # (socialwallet_timeout_s); a claimed row comes back after it if its worker died.
    outbox_worker_id: str | None = Field(default=None, min_length=1, max_length=128)
    outbox_batch: int = Field(default=20, ge=1, le=1000)
    outbox_poll_s: float = Field(default=1.0, gt=0, le=600)
    outbox_lease_s: float = Field(default=120.0, gt=0, le=24 * 3600)
    outbox_max_attempts: int = Field(default=12, ge=1, le=1000)
    outbox_backoff_base_s: float = Field(default=2.0, gt=0, le=3600)
    outbox_backoff_max_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    # Prometheus gauges of the Social Wallet delivery on the outbox worker (D24-F); 0 = none
    outbox_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    outbox_metrics_port: int = Field(default=0, ge=0, le=65535)
    # Social Wallet (docs/social-wallet.md). None: the social_wallet outbox rows wait.
    socialwallet_url: str | None = Field(default=None, min_length=1, pattern=r"^https?://")
    socialwallet_token: str | None = Field(default=None, min_length=1)
    socialwallet_timeout_s: float = Field(default=10.0, gt=0, le=600)
    socialwallet_reconcile_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    socialwallet_reconcile_grace_s: float = Field(default=600.0, ge=0, le=7 * 24 * 3600)

    # Monthly reports (docs/reports.md): scheduler poll interval; the local day of the month
    # from which an unapproved report triggers a 'report_reminder' (reports are due by the 5th).
    reports_poll_s: float = Field(default=300.0, gt=0, le=24 * 3600)
    reports_reminder_day: int = Field(default=4, ge=2, le=28)

    # Web Push to guardians and school admins (docs/push.md). No key file: the logging stand-in.
    push_vapid_key_file: str | None = Field(default=None, min_length=1)  # P-256 private key, PEM
    push_vapid_subject: str | None = Field(
        default=None, pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://\S+)$"
    )
    # Subscriptions may only point at these push services (a host or any of its subdomains).
    push_endpoint_hosts: tuple[str, ...] = PUSH_SERVICES
    push_allow_http_loopback: bool = False  # tests: a fake push service on 127.0.0.1
    push_ttl_s: int = Field(default=24 * 3600, ge=0, le=28 * 24 * 3600)
    push_timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _push_key_usable(self) -> Settings:
        if self.push_vapid_key_file:
            if not self.push_vapid_subject:
                raise ValueError("push_vapid_key_file needs push_vapid_subject (mailto: or https:)")
            from cloud.push.webpush import VapidKey

            try:
                with open(self.push_vapid_key_file, "rb") as f:
                    VapidKey(f.read(), self.push_vapid_subject)
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"push_vapid_key_file {self.push_vapid_key_file!r}: not a readable P-256"
                    " private key in PEM (create one with `qadam push-key FILE`)"
                ) from exc
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
