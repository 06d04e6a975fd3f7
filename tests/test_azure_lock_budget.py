"""Every Service Bus batch is settled while its messages are still locked.

The processing functions take batches (cardinality many). For those the Service Bus extension receives
with a plain ``ServiceBusReceiver`` one batch at a time per function and instance, and renews no lock
(Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.ServiceBus: ``ServiceBusListener
.RunBatchReceiveLoopAsync``; ``ServiceBusOptions``: ``MaxAutoLockRenewalDuration`` and
``MaxConcurrentCalls`` "do not apply for functions that receive a batch of messages"). A batch's locks
start when it is received, and must outlast the whole invocation and then the host completing its
messages. So, from the Bicep, host.json and the pipeline's own bounds:

    longest batch in the processor  <=  functionTimeout      (the host never cuts short a batch
                                                               the app would finish)
    functionTimeout + one completion try  <=  lockDuration   (no batch outlives its locks, even
                                                               one the host cuts short)
    maxBatchWaitTime  <=  lockDuration / 2                   (when minMessageBatchSize > 1: the
                                                               extension's documented limit)

The longest batch follows ``Processor._process`` (shared/pipeline/process.py): its phases run one after
another, and the tasks of a batch run side by side, so the batch takes its slowest task, not the sum.
A Valkey phase waits out an outage for ``STORE_PATIENCE`` and then one more call (its connect and
socket timeouts); a broker phase retries for ``BROKER_PATIENCE``. Each phase is counted as meeting its
own outage, which no single outage does: a bound, not an estimate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func

from functions import processing
from shared.brokers.lanes import PRIORITIES
from shared.pipeline.process import BROKER_PATIENCE, LIMITS_HOLD, STORE_PATIENCE
from shared.pipeline.registry import Registry, TaskType
from shared.store.store import Store
from shared.tasks import EchoPayload, registry
from tests.test_infra import INFRA, LANE, bicep, resources

ROOT = Path(__file__).resolve().parent.parent
#: ServiceBusRetryOptions.TryTimeout's default: how long one try of completing the batch may take.
DEFAULT_TRY_TIMEOUT = 60.0
#: ServiceBusOptions.MaxBatchWaitTime's default.
DEFAULT_MAX_BATCH_WAIT = 30.0
#: Service Bus's longest lock (a queue's lockDuration is at most five minutes).
LONGEST_LOCK = 300.0
#: host.json serviceBus settings that apply only to functions taking one message at a time.
SINGLE_MESSAGE_ONLY = ("maxConcurrentCalls", "maxAutoLockRenewalDuration", "maxConcurrentSessions")


def host_json() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    return found


def timespan(text: str) -> float:
    """A host.json time span, ``[d.]hh:mm:ss[.fff]``, in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)", text)
    assert match, f"not a time span: {text}"
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def iso_duration(text: str) -> float:
    """An ISO 8601 duration as the Bicep writes lock durations (``PT5M``, ``PT30S``), in seconds."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    assert match, f"not a duration: {text}"
    assert any(match.groups()), f"an empty duration: {text}"
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class Phase:
    what: str
    seconds: float


def valkey_call_seconds() -> float:
    """The longest one Valkey call can take: a new connection's connect timeout, then the socket timeout."""
    kwargs = Store("valkey://127.0.0.1:1/0").client.connection_pool.connection_kwargs
    return float(kwargs["socket_connect_timeout"]) + float(kwargs["socket_timeout"])


def batch_phases(task_types: Iterable[TaskType] = registry) -> list[Phase]:
    """The longest path through ``Processor._process`` for one batch, phase by phase."""
    valkey = STORE_PATIENCE + valkey_call_seconds()
    slowest = max(task_type.timeout for task_type in task_types)
    return [
        Phase("dead-letter an undecodable message, then count it", BROKER_PATIENCE + valkey_call_seconds()),
        Phase("mark expired tasks (lapse)", valkey),
        Phase("put off tasks not due yet", BROKER_PATIENCE),
        Phase("admit tasks of limited types", valkey),
        Phase("hold a limited task for its turn", LIMITS_HOLD),
        Phase("begin the attempts", valkey),
        Phase("run the handlers, side by side: the slowest type's timeout", slowest),
        Phase("release concurrency slots", valkey_call_seconds()),
        Phase("record the outcomes", valkey),
        Phase("re-send failed attempts", BROKER_PATIENCE),
        Phase("dead-letter tasks out of attempts", BROKER_PATIENCE),
    ]


def batch_budget(task_types: Iterable[TaskType] = registry) -> float:
    return sum(phase.seconds for phase in batch_phases(task_types))


def lane_lock_durations() -> dict[str, float]:
    queues = resources(LANE, "Microsoft.ServiceBus/namespaces/queues")
    return {name: iso_duration(queue["properties"]["lockDuration"]) for name, queue in queues.items()}


def service_bus_settings() -> dict[str, Any]:
    found: dict[str, Any] = host_json()["extensions"]["serviceBus"]
    return found


def test_every_service_bus_function_takes_batches() -> None:
    # The arithmetic below is for batch functions; a single-message one would need lock renewal instead.
    blueprint = func.Blueprint()
    for priority in PRIORITIES:
        processing.servicebus_trigger(blueprint, priority)
    triggers = [
        binding.get_dict_repr()
        for builder in blueprint._function_builders
        for binding in builder.build().get_bindings()
        if binding.type == "serviceBusTrigger"
    ]
    assert len(triggers) == len(PRIORITIES)
    assert {str(trigger["cardinality"]) for trigger in triggers} == {str(func.Cardinality.MANY)}


def test_host_json_sets_no_service_bus_option_that_batch_functions_ignore() -> None:
    assert [key for key in SINGLE_MESSAGE_ONLY if key in service_bus_settings()] == []


def test_the_longest_batch_ends_before_the_function_timeout() -> None:
    function_timeout = timespan(host_json()["functionTimeout"])
    assert batch_budget() <= function_timeout, "\n".join(
        f"{p.seconds:6.1f}  {p.what}" for p in batch_phases()
    )


def test_no_batch_outlives_its_locks_even_when_the_host_cuts_it_short() -> None:
    settings = service_bus_settings()
    function_timeout = timespan(host_json()["functionTimeout"])
    try_timeout = timespan(settings.get("clientRetryOptions", {}).get("tryTimeout", "00:01:00"))
    locks = lane_lock_durations()
    assert set(locks) == {"queue", "deadLetters"}
    # The work queue's lock covers the invocation and the completion try after it.
    assert function_timeout + try_timeout <= locks["queue"] <= LONGEST_LOCK
    # Messages waiting for a fuller batch hold their locks too (only when minMessageBatchSize > 1).
    if int(settings.get("minMessageBatchSize", 1)) > 1:
        wait = timespan(settings.get("maxBatchWaitTime", "00:00:30"))
        assert wait <= locks["queue"] / 2
        assert wait + function_timeout + try_timeout <= locks["queue"]


def test_every_lane_uses_the_checked_lock() -> None:
    # One module makes every lane's queue, so the lock above holds for tasks, tasks.high and tasks.low.
    lanes = bicep(INFRA / "modules" / "servicebus.bicep")["variables"]["lanes"]["value"]
    assert len(lanes) == len(PRIORITIES)


def test_a_task_type_slower_than_the_budget_allows_is_caught() -> None:
    # Given the app's types and one whose timeout alone is the function timeout
    function_timeout = timespan(host_json()["functionTimeout"])
    slow = Registry()
    slow.task("slow", timeout=function_timeout)(_slow)
    # When the budget is worked out with it, then it no longer fits: the test above would fail
    assert batch_budget([*registry, *slow]) > function_timeout


def test_the_readme_states_the_budget_the_code_has() -> None:
    # infra/README.md explains the lock arithmetic with the same numbers.
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    assert f"{batch_budget():.0f} s" in readme
    assert f"`{host_json()['functionTimeout']}`" in readme


async def _slow(payload: EchoPayload) -> None:
    """A handler for the made-up slow type above; never run."""
