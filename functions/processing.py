"""Queue-triggered processing: Service Bus in Azure (batches), RabbitMQ in the local profile.

One function per priority lane (:mod:`shared.brokers.lanes`): ``process_tasks`` on ``TASKS_QUEUE``
(normal), ``process_tasks_high`` and ``process_tasks_low`` on ``<TASKS_QUEUE>.high`` and ``.low``. Each
is a function of its own so that Azure scales each lane on its own queue's depth.

Each adapter turns what its trigger hands over into :class:`Delivery` values and returns normally
once the pipeline has settled every one (completed, re-sent for another attempt, or dead-lettered),
so the trigger acknowledges them; it raises only for deliveries the pipeline could not settle, which
the trigger then hands back to the broker.
"""

import typing

import azure.functions as func

from shared.brokers.lanes import NORMAL, PRIORITIES, lane_queue
from shared.pipeline.delivery import Delivery, RedeliveryError, TraceContext
from shared.pipeline.root import pipeline
from shared.pipeline.settings import broker_system

bp = func.Blueprint()


async def _process(deliveries: list[Delivery]) -> None:
    decisions = await pipeline().processor.process(deliveries)
    if not all(d.settled for d in decisions):
        raise RedeliveryError(decisions)


def _function_name(priority: str) -> str:
    return "process_tasks" if priority == NORMAL else f"process_tasks_{priority}"


def rabbitmq_trigger(blueprint: func.Blueprint, priority: str = NORMAL) -> None:
    @blueprint.function_name(_function_name(priority))
    @blueprint.generic_trigger(
        arg_name="message",
        type="rabbitMQTrigger",
        queue_name=lane_queue("%TASKS_QUEUE%", priority),
        connection_string_setting="RabbitMQConnection",
    )
    async def process_tasks(message: bytes, context: func.Context) -> None:
        # The host hands the message's traceparent over as the invocation's trace context.
        trace = context.trace_context
        await _process([Delivery(message, trace=TraceContext.of(trace.trace_parent, trace.trace_state))])


def servicebus_trigger(blueprint: func.Blueprint, priority: str = NORMAL) -> None:
    @blueprint.function_name(_function_name(priority))
    @blueprint.service_bus_queue_trigger(
        arg_name="messages",
        queue_name=lane_queue("%TASKS_QUEUE%", priority),
        connection="ServiceBusConnection",
        cardinality=func.Cardinality.MANY,
    )
    # The worker accepts only typing.List here, not list[...] (azure-functions-python-worker#1034).
    async def process_tasks(messages: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        await _process(
            [
                Delivery(
                    m.get_body(),
                    m.message_id or "",
                    m.delivery_count or 1,
                    TraceContext.from_headers(m.application_properties),
                )
                for m in messages
            ]
        )


#: The trigger for each broker; the settings' broker system picks one at import time.
_TRIGGERS = {"rabbitmq": rabbitmq_trigger, "servicebus": servicebus_trigger}
for _priority in PRIORITIES:
    _TRIGGERS[broker_system()](bp, _priority)
