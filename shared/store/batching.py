"""Send the commands of concurrent callers to Valkey together: one pipeline per event-loop turn.

Queue-triggered invocations run side by side (up to the trigger's prefetch), and each writes a
little to Valkey. Sent one by one, every write pays its own round trip and the client library's
per-call overhead; coalesced, a burst of thirty invocations costs one pipeline. Callers still get
their own result (or exception) as if they had sent alone.

Lua scripts are called by SHA; after a Valkey restart forgets them, the first ``NOSCRIPT`` answer
reloads every script and the commands that hit it are sent once more.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import libvalkey
import valkey.asyncio as valkey
from valkey.exceptions import NoScriptError, ValkeyError

log = logging.getLogger(__name__)


class FastConnection(valkey.Connection):
    """A connection that encodes commands with libvalkey's C packer instead of Python code."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # Multi-word commands ("SCRIPT LOAD") travel as separate words, as valkey-py sends them.
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        return [libvalkey.pack_command(args)]


class Script:
    """A Lua script known by its SHA1, as ``EVALSHA`` wants it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class Coalescer:
    """Queues commands and sends them as pipelines, one at a time.

    While a pipeline is out, new commands wait; the next pipeline carries all of them. Under load
    that batches by itself (the busier Valkey's round trip, the fuller the next pipeline); when
    idle, a command goes out on the next loop turn.
    """

    def __init__(self, client: valkey.Valkey, scripts: Sequence[Script]) -> None:
        self._client = client
        self._scripts = tuple(scripts)
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._scheduled = False

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command; the future resolves to its reply or raises its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if not self._scheduled and not self._flushing:
            self._scheduled = True
            loop.call_soon(self._start_flush)
        return future

    async def run(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Queue several commands and wait for all their replies (in order)."""
        if len(commands) == 1:  # the common case: skip gather's bookkeeping
            return [await self.submit(*commands[0])]
        return list(await asyncio.gather(*(self.submit(*c) for c in commands)))

    def _start_flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushing.discard(task)
        if self._pending:
            self._start_flush()

    async def _flush(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._execute([command for command, _ in batch])
            if any(isinstance(r, NoScriptError) for r in replies):
                await self.load_scripts()
                retry = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                again = await self._execute([batch[i][0] for i in retry])
                for i, reply in zip(retry, again, strict=True):
                    replies[i] = reply
        except (ValkeyError, OSError) as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def load_scripts(self) -> None:
        pipe = self._client.pipeline(transaction=False)
        for script in self._scripts:
            pipe.script_load(script.source)
        await pipe.execute()
        log.info("Loaded %d Valkey scripts", len(self._scripts))

    async def drain(self) -> None:
        """Wait for every flush under way (before closing the client)."""
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
