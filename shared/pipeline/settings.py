"""tasklane's settings: one frozen object, built from the environment in one place.

Every other module takes a :class:`Settings` (or a part of it); none reads ``os.environ``. A missing
or malformed setting is a :class:`~shared.errors.ConfigError` that names the setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from shared.errors import ConfigError
from shared.platform.keyvault import KeyVaultReferenceError, is_reference, parse_secret_uri
from shared.platform.servicebus_connection import (
    ConnectionSettingError,
    ServiceBusConnection,
    resolve_connection,
)
from shared.secrets import Secret
from shared.secrets.entra import EntraToken

if TYPE_CHECKING:
    from shared.brokers.base import Broker
from shared.secrets.refresh import RefreshingSecret

#: Names of the settings the app reads; infra/ must set each of them (checked by a test).
PROFILE = "TASKLANE_PROFILE"
TASKS_QUEUE = "TASKS_QUEUE"
RABBITMQ_CONNECTION = "RabbitMQConnection"
SERVICEBUS_CONNECTION = "ServiceBusConnection"
VALKEY_URL = "VALKEY_URL"
VALKEY_PASSWORD = "VALKEY_PASSWORD"
MAX_BACKLOG = "TASKS_MAX_BACKLOG"
MAX_BODY_BYTES = "TASKS_MAX_BODY_BYTES"
RATE_LIMIT = "TASKS_RATE_LIMIT"
RATE_BURST = "TASKS_RATE_BURST"
STATUS_TTL = "TASKS_STATUS_TTL_SECONDS"
BACKLOG_SCHEDULE = "BACKLOG_SCHEDULE"  # read by the timer binding only
#: The Key Vault secret (a versionless secret URI, not a reference) that VALKEY_PASSWORD comes from.
VALKEY_PASSWORD_SECRET_URI = "VALKEY_PASSWORD_SECRET_URI"
SECRET_REFRESH_SECONDS = "SECRET_REFRESH_SECONDS"
#: The user-assigned managed identity that reads Key Vault (azure-identity's own setting name).
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
#: ``entra``: Valkey (Azure Managed Redis) takes a Microsoft Entra token of that identity, not a password.
VALKEY_CREDENTIAL = "VALKEY_CREDENTIAL"


@dataclass(frozen=True)
class RabbitMQConnection:
    """The local profile's broker: RabbitMQ at ``url`` (``RabbitMQConnection``)."""

    url: Secret
    system: ClassVar[str] = "rabbitmq"

    def build_broker(self, queue: str) -> Broker:
        from shared.brokers.rabbitmq import (
            RabbitMQBroker,
        )  # only where used: aio-pika stays unloaded in Azure

        return _lanes(queue, lambda lane: RabbitMQBroker(self.url, lane))


@dataclass(frozen=True)
class ServiceBusSettings:
    """The Azure profile's broker: Service Bus through ``connection`` (the ``ServiceBusConnection``
    setting, resolved as the trigger resolves it)."""

    connection: ServiceBusConnection
    system: ClassVar[str] = "servicebus"

    def build_broker(self, queue: str) -> Broker:
        from shared.brokers.servicebus import ServiceBusBroker

        return _lanes(queue, lambda lane: ServiceBusBroker(self.connection, lane))


def _lanes(queue: str, build: Callable[[str], Broker]) -> Broker:
    """A broker per priority lane of ``queue`` (:mod:`shared.brokers.lanes`), as one."""
    from shared.brokers.lanes import PRIORITIES, Lanes, lane_queue

    return Lanes({priority: build(lane_queue(queue, priority)) for priority in PRIORITIES})


#: The broker is a typed part of the settings; each kind knows its system name and builds its broker.
BrokerConnection = RabbitMQConnection | ServiceBusSettings


@dataclass(frozen=True)
class Settings:
    """Everything tasklane's own code reads from app settings."""

    broker: BrokerConnection
    tasks_queue: str = "tasks"
    valkey_url: str = "valkey://127.0.0.1:6379/0"
    #: The password, or with ``VALKEY_CREDENTIAL=entra`` the Entra token that stands in for one.
    valkey_password: Secret | None = None
    max_backlog: int = 100_000
    max_body_bytes: int = 4 * 1024 * 1024
    #: Tasks per second each caller may submit (0: no limit), and how many at once above that.
    rate_limit: float = 0.0
    rate_burst: int = 100
    status_ttl_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            broker=_broker(env),
            tasks_queue=_text(env, TASKS_QUEUE, "tasks"),
            valkey_url=_text(env, VALKEY_URL, "valkey://127.0.0.1:6379/0"),
            valkey_password=_valkey_password(env),
            max_backlog=_positive(env, MAX_BACKLOG, 100_000),
            max_body_bytes=_positive(env, MAX_BODY_BYTES, 4 * 1024 * 1024),
            rate_limit=_rate(env, RATE_LIMIT),
            rate_burst=_positive(env, RATE_BURST, 100),
            status_ttl_seconds=_positive(env, STATUS_TTL, 7 * 24 * 3600),
        )


def broker_system(environ: Mapping[str, str] | None = None) -> str:
    """``rabbitmq`` or ``servicebus``, from ``TASKLANE_PROFILE`` alone.

    The processing blueprint chooses its trigger with it at import time, before any connection
    setting is needed (a missing one is reported on first use, naming itself).
    """
    env = os.environ if environ is None else environ
    profile = env.get(PROFILE, "azure").strip().lower()
    if profile not in _SYSTEMS:
        raise ConfigError(f"{PROFILE}='{profile}': expected 'azure' (Service Bus) or 'local' (RabbitMQ)")
    return _SYSTEMS[profile]


_SYSTEMS = {"local": RabbitMQConnection.system, "azure": ServiceBusSettings.system}


def _broker(env: Mapping[str, str]) -> BrokerConnection:
    if broker_system(env) == RabbitMQConnection.system:
        url = env.get(RABBITMQ_CONNECTION, "").strip()
        if not url:
            raise ConfigError(f"{RABBITMQ_CONNECTION} is not set: the local profile sends to RabbitMQ")
        return RabbitMQConnection(Secret(url))
    try:
        return ServiceBusSettings(resolve_connection(env, SERVICEBUS_CONNECTION))
    except ConnectionSettingError as exc:
        raise ConfigError(f"{exc} (the azure profile sends to Service Bus)") from None


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _rate(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}='{raw}' is not a number (tasks per second; 0 for no limit)") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw} must be a finite number of tasks per second, 0 or more")
    return value


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}='{raw}' is not a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be greater than zero")
    return value


def _valkey_password(env: Mapping[str, str]) -> Secret | None:
    """``VALKEY_PASSWORD``; with ``VALKEY_PASSWORD_SECRET_URI`` set, it follows that Key Vault secret;
    with ``VALKEY_CREDENTIAL=entra``, a Microsoft Entra token of ``AZURE_CLIENT_ID`` replaces it.

    The platform resolves ``VALKEY_PASSWORD`` (a Key Vault reference) once at start; following the
    secret too picks up a rotated password within ``SECRET_REFRESH_SECONDS``, without a restart.
    """
    credential = env.get(VALKEY_CREDENTIAL, "").strip().lower()
    if credential:
        if credential != "entra":
            raise ConfigError(
                f"{VALKEY_CREDENTIAL}='{credential}': expected 'entra' (a Microsoft Entra token), or unset"
                f" for {VALKEY_PASSWORD}"
            )
        return EntraToken(client_id=env.get(AZURE_CLIENT_ID, "").strip() or None)
    raw = env.get(VALKEY_PASSWORD, "")
    uri = env.get(VALKEY_PASSWORD_SECRET_URI, "").strip()
    if not uri:
        return Secret(raw) if raw else None
    try:
        reference = parse_secret_uri(uri)
    except KeyVaultReferenceError as exc:
        raise ConfigError(f"{VALKEY_PASSWORD_SECRET_URI}: {exc}") from None
    return RefreshingSecret.from_key_vault(
        reference,
        # A reference the platform could not resolve is its own text, not a password: read the vault.
        initial=Secret(raw) if raw and not is_reference(raw) else None,
        interval=_positive(env, SECRET_REFRESH_SECONDS, 300),
        client_id=env.get(AZURE_CLIENT_ID, "").strip() or None,
    )
