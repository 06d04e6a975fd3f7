"""What a ``rabbitMQTrigger`` binding and ``extensions.rabbitMQ`` of host.json ask for.

Read once when the listener is built, so a missing setting or an unusable annotation is an
indexing error before anything connects.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from yarl import URL

from local.host.errors import IndexingError, SettingNotFoundError
from local.host.indexing import IndexedFunction
from local.host.settings import setting
from local.host.triggers import ListenerContext

#: The extension's default for ``extensions.rabbitMQ.prefetchCount``.
DEFAULT_PREFETCH_COUNT = 30


@dataclass(frozen=True)
class RabbitMQTriggerOptions:
    """The queue, the broker and how the body reaches the function."""

    queue_name: str
    url: str
    prefetch_count: int = DEFAULT_PREFETCH_COUNT
    #: ``bytes`` instead of ``str`` for the body.
    as_bytes: bool = False

    @classmethod
    def from_function(cls, fn: IndexedFunction, ctx: ListenerContext) -> RabbitMQTriggerOptions:
        """Read ``fn``'s trigger binding (already ``%Setting%``-resolved) and host.json."""
        queue_name = str(fn.trigger.get("queueName") or "")
        if not queue_name:
            raise IndexingError(fn.name, "the rabbitMQTrigger binding has no queueName")
        prefetch = ctx.host_config.extension("rabbitMQ").get("prefetchCount", DEFAULT_PREFETCH_COUNT)
        try:
            prefetch_count = int(prefetch)
        except (TypeError, ValueError):
            raise IndexingError(
                fn.name, f"extensions.rabbitMQ.prefetchCount '{prefetch}' is not a number"
            ) from None
        if not 0 <= prefetch_count <= 65535:  # basic.qos carries a 16-bit count; 0 means unlimited
            raise IndexingError(fn.name, f"extensions.rabbitMQ.prefetchCount {prefetch_count} is not 0-65535")
        return cls(queue_name, _connection_url(fn, ctx), prefetch_count, _wants_bytes(fn))

    @property
    def safe_url(self) -> str:
        """The broker's URL without credentials, for messages and logs."""
        return str(URL(self.url).with_user(None))


def _connection_url(fn: IndexedFunction, ctx: ListenerContext) -> str:
    """The AMQP URL as the extension resolves it: the connection string or setting that
    ``connectionStringSetting`` names, else ``extensions.rabbitMQ.connectionString``."""
    name = fn.trigger.get("connectionStringSetting")
    fallback = str(ctx.host_config.extension("rabbitMQ").get("connectionString") or "")
    if name:
        url = ctx.environ.get(f"ConnectionStrings:{name}", "")
        try:
            url = url or setting(ctx.environ, str(name))
        except SettingNotFoundError:
            if not fallback:
                raise
        if url:
            return url
    if fallback:
        return fallback
    raise IndexingError(
        fn.name,
        "no RabbitMQ connection: set connectionStringSetting on the trigger (naming a setting that holds"
        " the amqp:// URL) or extensions.rabbitMQ.connectionString in host.json",
    )


def _wants_bytes(fn: IndexedFunction) -> bool:
    """Whether the body is passed as ``bytes`` rather than ``str``.

    The host converts the body by ``dataType`` (``binary``/``stream`` → bytes, ``string`` → str)
    and the worker's generic binding passes that datum through unchanged; without a ``dataType``
    the annotation decides, ``str`` (UTF-8, like the extension's ``ToInvokeString``) by default.
    """
    data_type = str(fn.trigger.get("dataType") or "").lower()
    if data_type in ("binary", "stream"):
        return True
    if data_type == "string":
        return False
    annotation = fn.annotation(fn.trigger.name)
    if annotation is inspect.Parameter.empty:
        return False
    if isinstance(annotation, type) and issubclass(annotation, (str, bytes)):
        return issubclass(annotation, bytes)
    # The worker refuses such a function at load time with this message.
    shown = getattr(annotation, "__name__", repr(annotation))
    raise IndexingError(
        fn.name,
        f'type of {fn.trigger.name} binding in function.json "rabbitMQTrigger" does not match its'
        f' Python annotation "{shown}"',
    )
