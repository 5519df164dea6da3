"""Service configuration: one pydantic-settings class read from ``QADAM_*`` environment variables.

Invalid values fail at construction (fail fast), not when first used.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from cloud.db.conn import check_read_url, check_write_url
from cloud.provisioning.boardsetup import DEFAULT_NTP_SERVERS, check_ntp_servers, load_ca_pem

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

    # Writes. A replicated store (D29-D, docs/deploy.md "Replicated store") names every node:
    # postgresql://a:5432,b:5432/qadam?target_session_attrs=read-write (checked at start-up).
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5432/qadam", min_length=1)
    # The API's reads and report downloads, e.g. the same nodes with
    # target_session_attrs=prefer-standby; None: they use database_url.
    database_read_url: str | None = Field(default=None, min_length=1)

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
    # A database step (a flush's transaction, the ack keys) taking longer than this is cut and
    # retried on a new connection: a frozen primary after a failover (D29-D); 0 = never.
    ingest_db_stall_s: float = Field(default=60.0, ge=0, le=3600)
    # The broker the ingest reads (D29-C): "mosquitto" (one machine, MQTT, $share) or "rabbitmq"
    # (a cluster: boards still speak MQTT to its plugin, the ingest reads amqp_urls over AMQP
    # from ingest_partitions quorum queues of at most ingest_partition_max messages each).
    broker_kind: Literal["mosquitto", "rabbitmq"] = "mosquitto"
    amqp_urls: tuple[str, ...] = ()  # every node's amqp://USER:PASS@HOST:PORT/VHOST, tried in turn
    ingest_partitions: int = Field(default=16, ge=1, le=256)
    ingest_partition_max: int = Field(default=200_000, ge=1)
    # Before relying on $share/ or retained statuses, a process checks the broker delivers them
    # within this many seconds (cloud/broker/probe.py); 0 = no check.
    broker_probe_s: float = Field(default=5.0, ge=0, le=120)

    # API authentication (D8, D24-E). On by default; False keeps GET /api/v1/events open without
    # a token (the demo only): `qadam serve` then refuses to start unless insecure_dev is set.
    auth_required: bool = True
    # --insecure-dev / QADAM_INSECURE_DEV=1: a process that would be open (authentication off,
    # an anonymous broker, a board-shaped service account) starts anyway, with a loud banner
    # (cloud/startup.py). For development machines and the test fixtures only.
    insecure_dev: bool = False
    session_ttl_s: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)

    # The API under load (issue #19, D27-D). Connections per API process, kept open in a pool;
    # 0 = a new connection per request (the path before #19, kept as the bench's baseline).
    # With several processes the sum (api_workers x db_pool_size) must stay under PostgreSQL's
    # max_connections, or go through PgBouncer (docs/operations.md). A process runs Python one
    # thread at a time, so a few connections keep it busy; more only crowd PostgreSQL (D27-D).
    db_pool_size: int = Field(default=4, ge=0, le=1000)
    # A request waits this long for a pooled connection, then gets 503 with Retry-After.
    db_pool_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # A statement is prepared on its n-th execution on a connection (then reused); 0 = never
    # (PgBouncer in transaction mode before 1.21 cannot keep prepared statements).
    db_prepare_after: int = Field(default=1, ge=0, le=1000)
    api_workers: int = Field(default=1, ge=1, le=64)  # API processes of `qadam serve`
    # CPU priority of the API processes (nice, 0-19): on a machine shared with the ingest, the
    # taps get the CPU first when the API is saturated (the taps matter more than a feed).
    api_nice: int = Field(default=5, ge=0, le=19)
    # Requests one process works on at once; more wait up to api_queue_wait_s (at most
    # api_queue_max of them), then get 503 with Retry-After: the taps and the requests already
    # admitted keep the CPU.
    api_max_inflight: int = Field(default=16, ge=1, le=10_000)
    api_queue_max: int = Field(default=2_000, ge=0, le=1_000_000)
    api_queue_wait_s: float = Field(default=3.0, ge=0, le=60)
    api_retry_after_s: int = Field(default=2, ge=1, le=3600)
    # Rate limits (PyPI `limits` notation, ";"-separated; "" = none), counted in each process:
    # per client address (before any database work) and per account (after the token lookup).
    api_rate_client: str = Field(default="300/second;12000/minute", max_length=200)
    api_rate_account: str = Field(default="30/second;1200/minute", max_length=200)
    # Token lookups cached per process this long (0 = every request reads the database);
    # dropped on logout, revocation and user changes through PostgreSQL NOTIFY (D27-D).
    # Off by default: with the pool a lookup costs ~0.1 ms, and a cached one would outlive a
    # deactivation by the notice's delivery (milliseconds); worth it where the database is far.
    auth_cache_ttl_s: int = Field(default=0, ge=0, le=3600)
    api_metrics_host: str = Field(default="127.0.0.1", min_length=1)
    api_metrics_port: int = Field(default=0, ge=0, le=65535)  # 0 = no metrics endpoint

    # Device provisioning (docs/provisioning.md). mqtt_dynsec=True: per-board broker accounts and
    # ACLs through Mosquitto's dynamic-security plugin, managed as mqtt_admin_user. False (demo):
    # credentials are still issued, and the broker is logged as open.
    mqtt_dynsec: bool = False
    mqtt_admin_user: str | None = Field(default=None, min_length=1)
    mqtt_admin_password: str | None = None
    device_mqtt_host: str | None = Field(default=None, min_length=1)  # for boards; else mqtt_host
    device_mqtt_port: int | None = Field(default=None, ge=1, le=65535)  # else mqtt_port
    claim_token_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    # What boards are told at provisioning besides their account (cloud/provisioning/boardsetup.py,
    # D27-C): TLS to the broker (port 8883 unless device_mqtt_port says otherwise) with the CA of
    # device_ca_file (PEM, read and checked at start-up); the name the broker's certificate is
    # for, when boards reach it by another (an IP address); the NTP servers boards ask in order.
    device_mqtt_tls: bool = False
    device_ca_file: str | None = Field(default=None, min_length=1)
    device_mqtt_server_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.-]+$"
    )
    device_ntp_servers: tuple[str, ...] = DEFAULT_NTP_SERVERS
    _device_ca_pem: str | None = PrivateAttr(default=None)
    # Whitelist distribution (cloud/workers/whitelist_push.py)
    whitelist_keep: int = Field(default=10, ge=2, le=1000)  # versions kept per school
    whitelist_poll_ms: int = Field(default=500, ge=20, le=60_000)
    whitelist_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    # Canteen balance pushes (cloud/workers/balance_push.py, D15): a school marked dirty is
    # pushed once its first mark is balance_debounce_ms old, so a burst of charges is one push.
    balance_poll_ms: int = Field(default=250, ge=20, le=60_000)
    balance_debounce_ms: int = Field(default=1000, ge=0, le=600_000)
    balance_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    # Remote commands and the canteen menu push (cloud/workers/command_push.py, D27-A): queued
    # commands go out every command_poll_ms to online boards; one unanswered after
    # command_resend_s is sent again (config/resync/diag only); menus cover today and the next
    # menu_days_ahead days.
    command_poll_ms: int = Field(default=500, ge=20, le=60_000)
    command_resend_s: int = Field(default=30, ge=1, le=86_400)
    command_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    menu_days_ahead: int = Field(default=7, ge=0, le=15)
    # OTA (cloud/workers/ota_push.py, docs/ota.md, D27-B): the public half of the release key
    # (32 bytes, hex); None: every release is refused. The private half stays with `qadam
    # release` on the machine that builds releases, never in the cloud.
    ota_public_key: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    ota_poll_ms: int = Field(default=1000, ge=20, le=60_000)
    ota_client_id: str | None = Field(default=None, min_length=1, max_length=128)
    ota_canary_deadline_s: int = Field(default=1800, ge=10, le=604_800)  # a rollout's default

    # Outbox delivery (cloud/workers/outbox.py). The lease must outlast one delivery
    # (socialwallet_timeout_s); a claimed row comes back after it if its worker died.
    outbox_worker_id: str | None = Field(default=None, min_length=1, max_length=128)
    outbox_batch: int = Field(default=20, ge=1, le=1000)
    outbox_poll_s: float = Field(default=1.0, gt=0, le=600)
    outbox_lease_s: float = Field(default=120.0, gt=0, le=24 * 3600)
    outbox_max_attempts: int = Field(default=12, ge=1, le=1000)
    outbox_backoff_base_s: float = Field(default=2.0, gt=0, le=3600)
    outbox_backoff_max_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    # each worker's /healthz, /readyz, /metrics on this base port + its offset (cloud/ops.py)
    worker_ops_host: str = Field(default="127.0.0.1", min_length=1)
    worker_ops_port: int = Field(default=0, ge=0, le=65535 - 16)  # 0 = none
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

    # Retention of events (docs/operations.md "Retention", D29-B): whole UTC months kept online,
    # the current one included (37: three school years and the current month). Older months are
    # archived to files in the directory, checked, then dropped; no directory: nothing is dropped.
    retention_months: int = Field(default=37, ge=2, le=1200)
    retention_archive_dir: str | None = Field(default=None, min_length=1)
    retention_poll_s: float = Field(default=6 * 3600.0, gt=0, le=7 * 24 * 3600)
    retention_lock_timeout_s: float = Field(default=5.0, gt=0, le=3600)  # waits for a table lock
    retention_restore_hold_days: int = Field(default=30, ge=1, le=3650)  # a restored month stays

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
    # A tap older than this when its notice is due (its corrected time; docs/push.md) is not
    # pushed as news: one summary per child and day instead (issue #13 item 9).
    push_max_age_s: int = Field(default=3 * 3600, ge=60, le=7 * 24 * 3600)

    # Signed webhooks (docs/integrations.md, D29-I): https to a school's allowlisted hosts only;
    # plain http to loopback only when this is set (tests: a fake receiver on 127.0.0.1).
    webhook_allow_http_loopback: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # An e-journal (docs/integrations.md, D29-I): a generic REST adapter over OAuth2 client
    # credentials. No URL: no e-journal handler in the outbox worker (days queue up and wait).
    ejournal_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    ejournal_token_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    ejournal_client_id: str | None = Field(default=None, min_length=1, max_length=200)
    ejournal_client_secret_file: str | None = Field(default=None, min_length=1)  # read at start
    ejournal_scope: str | None = Field(default=None, min_length=1, max_length=200)
    ejournal_timeout_s: float = Field(default=20.0, gt=0, le=300)
    # the daily hook (cloud/integrations/ejournal/daily.py) queues a school's day after this
    ejournal_push_at: str = Field(default="20:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    platform_token_ttl_s: int = Field(default=600, ge=30, le=24 * 3600)  # the read API's tokens

    # E-mail (docs/email.md, D28-B): password resets and invitations, sent by the outbox worker
    # over SMTP. No host: e-mail is off and the pages that would send one say so.
    smtp_host: str | None = Field(default=None, min_length=1)
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True  # STARTTLS before authenticating (port 587); off: plain SMTP
    smtp_user: str | None = Field(default=None, min_length=1)
    smtp_password_file: str | None = Field(default=None, min_length=1)  # read at start-up
    smtp_from: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    smtp_timeout_s: float = Field(default=30.0, gt=0, le=600)
    _smtp_password: str | None = PrivateAttr(default=None)

    # OpenID Connect provider (docs/sso.md, D29-F). No issuer: the request's own origin (dev and
    # tests); in production set the public https origin relying parties will see.
    oidc_issuer: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+$")
    oidc_code_ttl_s: int = Field(default=60, ge=10, le=600)
    oidc_access_token_ttl_s: int = Field(default=600, ge=30, le=24 * 3600)  # ID tokens too
    oidc_refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=300, le=180 * 24 * 3600)
    oidc_key_rotation_s: int = Field(default=30 * 24 * 3600, ge=60, le=365 * 24 * 3600)

    @model_validator(mode="after")
    def _device_setup_usable(self) -> Settings:
        try:
            check_ntp_servers(self.device_ntp_servers)
        except ValueError as exc:
            raise ValueError(f"device_ntp_servers: {exc}") from None
        if self.device_mqtt_tls and not self.device_ca_file:
            raise ValueError(
                "device_mqtt_tls needs device_ca_file (the PEM file of the CA that signed the"
                " broker's certificate; boards verify the broker with it)"
            )
        if self.device_ca_file:
            try:
                self._device_ca_pem = load_ca_pem(self.device_ca_file)
            except ValueError as exc:
                raise ValueError(f"device_ca_file {self.device_ca_file!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _broker_usable(self) -> Settings:
        if self.broker_kind == "rabbitmq":
            if not self.amqp_urls:
                raise ValueError("broker_kind rabbitmq needs amqp_urls (every node's amqp:// URL)")
            if self.ingest_shared_group:
                raise ValueError(
                    "ingest_shared_group is for Mosquitto: RabbitMQ grants $share/ and delivers"
                    " nothing; with broker_kind rabbitmq the ingest shares the partitions"
                )
        if any(not u.startswith(("amqp://", "amqps://")) for u in self.amqp_urls):
            raise ValueError("amqp_urls: every URL starts with amqp:// or amqps://")
        return self

    @model_validator(mode="after")
    def _smtp_usable(self) -> Settings:
        if self.smtp_host and not self.smtp_from:
            raise ValueError(
                "smtp_host needs smtp_from (the sender's address, e.g. no-reply@school.kz)"
            )
        if self.smtp_password_file:
            if not self.smtp_user:
                raise ValueError("smtp_password_file needs smtp_user")
            try:
                with open(self.smtp_password_file, encoding="utf-8") as f:
                    self._smtp_password = f.read().strip()
            except OSError as exc:
                raise ValueError(f"smtp_password_file {self.smtp_password_file!r}: {exc}") from None
        return self

    @property
    def smtp_password(self) -> str | None:
        """The SMTP password (smtp_password_file's text, read once at start-up)."""
        return self._smtp_password

    @property
    def email_ready(self) -> bool:
        """Whether e-mail can be sent at all (a host and a sender address are set)."""
        return bool(self.smtp_host and self.smtp_from)

    @property
    def device_ca_pem(self) -> str | None:
        """The CA boards trust (PEM text of device_ca_file, read once at start-up)."""
        return self._device_ca_pem

    @field_validator("database_url")
    @classmethod
    def _write_url_usable(cls, value: str) -> str:
        return check_write_url(value)

    @field_validator("database_read_url")
    @classmethod
    def _read_url_usable(cls, value: str | None) -> str | None:
        return None if value is None else check_read_url(value)

    @property
    def read_database_url(self) -> str:
        """Where reads that may lag a little go: database_read_url, else database_url."""
        return self.database_read_url or self.database_url

    @field_validator("api_rate_client", "api_rate_account")
    @classmethod
    def _rate_limits_parse(cls, value: str) -> str:
        if value.strip():
            from limits import parse_many

            try:
                parse_many(value)
            except ValueError:
                raise ValueError("not limits like 200/second;6000/minute") from None
        return value

    @model_validator(mode="after")
    def _push_key_usable(self) -> Settings:
        if self.push_vapid_key_file:
            if not self.push_vapid_subject:
                raise ValueError(
                    "push_vapid_key_file needs push_vapid_subject (set mailto:ADDRESS or an"
                    " https:// URL)"
                )
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


class ConfigError(ValueError):
    """The environment's settings are invalid; the message is one line naming each QADAM_*
    variable, what is wrong with it and what to set (issue #13 item 15)."""


# What to set, where the field's type and bounds do not say it well enough.
_HINTS = {
    "database_url": "set postgresql://USER@HOST:PORT/DBNAME",
    "database_read_url": "set postgresql://USER@HOST:PORT/DBNAME, or leave it unset",
    "topic_prefix": "set a topic level without #, + or a leading /, e.g. qadam",
    "ingest_shared_group": "letters, digits, _ and - only",
    "socialwallet_url": "set an http(s):// URL",
    "push_vapid_subject": "set mailto:ADDRESS or an https:// URL",
    "push_endpoint_hosts": 'set a JSON list of host names, e.g. ["fcm.googleapis.com"]',
    "ingest_metrics_port": "set a port 1-65535, or 0 for no metrics endpoint",
    "worker_ops_port": "set a base port 1-65519 (each worker adds its offset), or 0 for none",
    "api_metrics_port": "set a port 1-65535, or 0 for no metrics endpoint",
    "api_rate_client": 'set limits like "300/second;12000/minute", or "" for none',
    "api_rate_account": 'set limits like "30/second;1200/minute", or "" for none',
    "device_ntp_servers": 'set a JSON list of HOST or HOST:PORT, e.g. ["kz.pool.ntp.org"]',
    "device_mqtt_server_name": "set the DNS name the broker's certificate is for",
    "broker_kind": "set mosquitto or rabbitmq",
    "amqp_urls": 'set a JSON list, e.g. ["amqp://qadam:PASS@10.0.0.1:5672/%2F"]',
}
# Never echoed in a message: they may hold a password.
_SECRET = {
    "database_url", "mqtt_password", "mqtt_admin_password", "socialwallet_token",
    "amqp_urls", "database_read_url",
}  # fmt: skip
_NUMBER_WORD = {int: "an integer", float: "a number"}


def env_name(field: str) -> str:
    return "QADAM_" + field.upper()


def _hint(field: str) -> str:
    if field in _HINTS:
        return _HINTS[field]
    info = Settings.model_fields.get(field)
    if info is None:
        return ""
    annotation = info.annotation
    if annotation is bool:
        return "set 1 or 0, true or false"
    bounds = {
        name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt")
        if hasattr(m, name)
    }  # fmt: skip
    kind = next((w for t, w in _NUMBER_WORD.items() if annotation in (t, t | None)), None)
    if kind is not None:
        if field.endswith("_port") and bounds.get("ge") == 1 and bounds.get("le") == 65535:
            return "set a port 1-65535"
        low = (
            f"from {bounds['ge']:g}" if "ge" in bounds
            else f"above {bounds['gt']:g}" if "gt" in bounds else ""
        )  # fmt: skip
        high = f"up to {bounds['le']:g}" if "le" in bounds else ""
        return " ".join(w for w in ("set", kind, low, high) if w) if low or high else f"set {kind}"
    return ""


def _shown(field: str, value: object) -> str:
    if field in _SECRET:
        return "the value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_to_env(text: str) -> str:
    for field in sorted(Settings.model_fields, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9_]){field}(?![A-Za-z0-9_])", env_name(field), text)
    return text


def describe_errors(exc: ValidationError) -> str:
    """A ValidationError of Settings as one line: ``QADAM_X: 'v' is not ... (set ...); ...``."""
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        kind = err["type"]
        if not field or field not in Settings.model_fields:  # a rule across fields
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(_fields_to_env(msg))
            continue
        shown = _shown(field, err.get("input"))
        if kind == "int_parsing":
            what = f"{shown} is not an integer"
        elif kind == "float_parsing":
            what = f"{shown} is not a number"
        elif kind == "bool_parsing":
            what = f"{shown} is not a yes/no value"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            what = f"{shown} is out of range"
        elif kind == "string_pattern_mismatch":
            what = f"{shown} has the wrong form"
        elif kind == "string_too_short":
            what = "is empty"
        elif kind == "extra_forbidden":
            what = "is not a setting"
        elif kind == "value_error":  # our validators' messages never quote a secret
            msg = str(err["msg"]).removeprefix("Value error, ")
            what = msg if field in _SECRET else f"{shown}: {msg}"
        else:
            what = f"{shown}: {err['msg']}"
        hint = _hint(field)
        parts.append(f"{env_name(field)}: {what}" + (f" ({hint})" if hint else ""))
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once. Invalid settings raise
    :class:`ConfigError` with one line saying what is wrong and what to set."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
    except PydanticSettingsError as exc:  # a list/tuple setting that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        name = field.group(1) if field else ""
        hint = _hint(name)
        raise ConfigError(
            f"{env_name(name) if name else 'a QADAM_* variable'}: not valid JSON"
            + (f" ({hint})" if hint else "")
        ) from None
