"""``serviceBusTrigger``: receive from a queue or subscription and invoke, as the Service Bus extension.

The extension's rules (ServiceBusListener, MessageProcessor, ServiceBusOptions), kept here:
peek-lock receives with ``prefetchCount``; cardinality one keeps up to ``maxConcurrentCalls``
messages in flight and renews each lock up to ``maxAutoLockRenewalDuration``; cardinality many
takes one batch of up to ``maxMessageBatchSize`` at a time, without lock renewal. Success completes
(when ``autoCompleteMessages``), a failure abandons whatever that setting says; Service Bus then
redelivers and, past the entity's MaxDeliveryCount, dead-letters. The host never dead-letters.

Beyond the extension: on stop, messages received but not processed are abandoned, so they come
back at once instead of after their lock expires, and SDK errors are logged naming the connection
setting and entity, receiving resuming with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer

from local.host.errors import FunctionFailedError, HostError
from local.host.indexing import IndexedFunction
from local.host.triggers import ListenerContext
from local.host.triggers.servicebus_client import (
    ClientFactory,
    ReceiverLike,
    explain_error,
    is_permanent,
    sdk_client,
)
from local.host.triggers.servicebus_convert import input_shape, to_argument, trace_context
from local.host.triggers.servicebus_options import ServiceBusTriggerOptions, ignored_settings
from shared.platform.backoff import backoff_delay
from shared.platform.servicebus_connection import ConnectionSettingError, resolve_connection

log = logging.getLogger(__name__)

#: A receive is never cancelled (a message arriving meanwhile would stay locked until its lock
#: expires), so this bounds how long a stop waits for the receive in progress.
DEFAULT_RECEIVE_WAIT = 5.0
#: How long in-flight invocations may run on after a stop, like the host's graceful shutdown.
DEFAULT_STOP_GRACE = 30.0
OPEN_TIMEOUT = 60.0
SETTLE_TIMEOUT = 30.0


class ServiceBusListener:
    """Runs one ``serviceBusTrigger`` function; see the module docstring for the delivery rules."""

    def __init__(
        self,
        fn: IndexedFunction,
        ctx: ListenerContext,
        *,
        client_factory: ClientFactory = sdk_client,
        receive_wait: float = DEFAULT_RECEIVE_WAIT,
        stop_grace: float = DEFAULT_STOP_GRACE,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        """Read the binding, ``host.json`` and connection now, so a wrong one fails at load.

        ``client_factory`` builds the Service Bus client (the SDK's unless a test passes a double);
        ``backoff`` maps a failed receive attempt (1-based) to the seconds to wait before the next.
        """
        extension = ctx.host_config.extension("serviceBus")
        self.function = fn
        self.options = ServiceBusTriggerOptions.from_function(fn, extension)
        try:
            self.connection = resolve_connection(ctx.environ, self.options.connection_name)
        except ConnectionSettingError as exc:
            raise HostError(str(exc)) from None
        self._shape = input_shape(fn, self.options.many)
        self._ignored = ignored_settings(extension)
        self._invoker = ctx.invoker
        self._client_factory = client_factory
        self._receive_wait = receive_wait
        self._grace = stop_grace
        self._backoff = backoff or (lambda attempt: backoff_delay(attempt, random.random()))
        self._stack = AsyncExitStack()
        self._receiver: ReceiverLike | None = None
        self._pump: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._invocations: set[asyncio.Future[Any]] = set()
        self._stopping = asyncio.Event()

    def describe(self) -> str:
        """``serviceBusTrigger (queue tasks)``."""
        return f"serviceBusTrigger ({self.options.entity})"

    async def start(self) -> None:
        """Connect and start receiving; a wrong name, secret or role is a :class:`HostError`.

        A namespace that cannot be reached yet is only a warning: receiving retries in the background.
        """
        for key in self._ignored:
            log.warning("host.json extensions.serviceBus.%s is not honoured by the local host", key)
        try:
            self._receiver = self._open_receiver()
            await asyncio.wait_for(self._receiver.__aenter__(), OPEN_TIMEOUT)
        except Exception as exc:
            reason = explain_error(exc, self.options, self.connection)
            if self._receiver is None or is_permanent(exc):
                await self._stack.aclose()
                raise HostError(f"Function '{self.function.name}': {reason}") from exc
            log.warning("%s; retrying in the background", reason)
        self._pump = asyncio.create_task(self._run(), name=f"servicebus:{self.function.name}")
        log.info(
            "Listening on Service Bus %s in %s for %s",
            self.options.entity,
            self.connection.namespace,
            self.function.name,
        )

    async def stop(self) -> None:
        """Stop receiving, let in-flight invocations finish within the grace period, settle, close.

        An invocation still running after the grace period is cancelled and its messages abandoned;
        nothing is completed that was not processed.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._pump is not None:
            # The pump notices within one receive wait; it abandons whatever that receive returned.
            _, late = await asyncio.wait({self._pump}, timeout=self._receive_wait + SETTLE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._inflight:
            log.info("Waiting up to %gs for %d in-flight invocations", self._grace, len(self._inflight))
            _, pending = await asyncio.wait(set(self._inflight), timeout=self._grace)
            if pending:
                log.warning(
                    "%d invocations of %s did not finish within %gs; cancelling them and abandoning their "
                    "messages",
                    len(pending),
                    self.function.name,
                    self._grace,
                )
                for invocation in set(self._invocations):
                    invocation.cancel()
                await asyncio.wait(pending, timeout=SETTLE_TIMEOUT)
        await self._stack.aclose()
        log.info("Stopped listening on Service Bus %s", self.options.entity)

    def _open_receiver(self) -> ReceiverLike:
        client = self._client_factory(self.connection, self.options, self._stack)
        settings: dict[str, Any] = {
            "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
            "prefetch_count": self.options.prefetch_count,
        }
        # The extension renews locks only for single dispatch (the processor does it); 0 turns it off.
        if not self.options.many and self.options.max_auto_lock_renewal > 0:
            renewer = AutoLockRenewer(max_lock_renewal_duration=self.options.max_auto_lock_renewal)
            self._stack.push_async_callback(renewer.close)
            settings["auto_lock_renewer"] = renewer
        if self.options.queue_name is not None:
            receiver = client.get_queue_receiver(self.options.queue_name, **settings)
        else:
            assert self.options.topic_name is not None
            assert self.options.subscription_name is not None
            receiver = client.get_subscription_receiver(
                self.options.topic_name, self.options.subscription_name, **settings
            )
        self._stack.push_async_callback(receiver.close)
        return receiver

    async def _run(self) -> None:
        """Receive while there is room: one batch at a time (many), or up to maxConcurrentCalls (one)."""
        slots = 1 if self.options.many else self.options.max_concurrent_calls
        while not self._stopping.is_set():
            if len(self._inflight) >= slots:
                await self._wait_for_room()
                continue
            count = self.options.max_message_batch_size if self.options.many else slots - len(self._inflight)
            messages = await self._receive(count)
            if not messages:
                continue
            if self._stopping.is_set():
                log.info("Stopping: abandoning %d messages received but not processed", len(messages))
                await self._settle(messages, succeeded=False)
                return
            batches = [messages] if self.options.many else [[m] for m in messages]
            for batch in batches:
                task = asyncio.create_task(self._process(batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _wait_for_room(self) -> None:
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({stopping, *self._inflight}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    async def _receive(self, count: int) -> list[ServiceBusReceivedMessage]:
        assert self._receiver is not None
        attempt = 0
        while not self._stopping.is_set():
            try:
                return await self._receiver.receive_messages(
                    max_message_count=count, max_wait_time=self._receive_wait
                )
            except Exception as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.error("%s; retrying in %.1fs", explain_error(exc, self.options, self.connection), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        return []

    async def _process(self, messages: Sequence[ServiceBusReceivedMessage]) -> None:
        """Invoke the function once for ``messages`` and settle them by the outcome."""
        ids = ", ".join(str(m.message_id) for m in messages)
        try:
            argument = to_argument(
                self._shape, messages, many=self.options.many, function_name=self.function.name
            )
            parent, state = trace_context(messages)
        except Exception as exc:
            # In Azure a binding failure fails the invocation, so the messages are abandoned.
            log.error("Cannot bind message(s) %s for %s: %s", ids, self.function.name, exc, exc_info=exc)
            await self._settle(messages, succeeded=False)
            return
        invocation = asyncio.ensure_future(
            self._invoker.invoke(
                self.function, {self.function.trigger.name: argument}, trace_parent=parent, trace_state=state
            )
        )
        self._invocations.add(invocation)
        try:
            await invocation
        except Exception as exc:
            # The function's own exception was logged by the invoker; anything else is the host's.
            if not isinstance(exc, FunctionFailedError):
                log.error("Invocation for message(s) %s failed in the host", ids, exc_info=exc)
            await self._settle(messages, succeeded=False)
            return
        except asyncio.CancelledError:
            if not invocation.cancelled():
                raise
            await self._settle(messages, succeeded=False)  # cancelled by stop: never completed
            return
        finally:
            self._invocations.discard(invocation)
        if self.options.auto_complete:
            await self._settle(messages, succeeded=True)

    async def _settle(self, messages: Sequence[ServiceBusReceivedMessage], *, succeeded: bool) -> None:
        """Complete or abandon each message; a lost lock only means Service Bus redelivers it."""
        receiver = self._receiver
        assert receiver is not None
        settle = receiver.complete_message if succeeded else receiver.abandon_message
        verb = "complete" if succeeded else "abandon"
        outcomes = await asyncio.gather(*(settle(m) for m in messages), return_exceptions=True)
        for message, outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning(
                    "Could not %s message %s of %s (%s: %s); Service Bus redelivers it when its lock expires",
                    verb,
                    message.message_id,
                    self.options.entity,
                    type(outcome).__name__,
                    outcome,
                )
            else:
                log.debug("Message %s of %s: %sd", message.message_id, self.options.entity, verb)
