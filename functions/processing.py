"""Queue-triggered processing: Service Bus in Azure (batches), RabbitMQ in the local profile."""

import typing

import azure.functions as func

from shared.pipeline import root as runtime
from shared.pipeline.settings import current_profile

bp = func.Blueprint()

if current_profile() == "local":

    @bp.generic_trigger(
        arg_name="message",
        type="rabbitMQTrigger",
        queue_name="%TASKS_QUEUE%",
        connection_string_setting="RabbitMQConnection",
    )
    async def process_tasks(message: bytes, context: func.Context) -> None:
        # The host hands the message's traceparent over as the invocation's trace context.
        trace = context.trace_context
        headers = {"traceparent": trace.trace_parent, "tracestate": trace.trace_state}
        await runtime.processor().process([message], (), [headers])

else:

    @bp.service_bus_queue_trigger(
        arg_name="messages",
        queue_name="%TASKS_QUEUE%",
        connection="ServiceBusConnection",
        cardinality=func.Cardinality.MANY,
    )
    # The worker accepts only typing.List here, not list[...] (azure-functions-python-worker#1034).
    async def process_tasks(messages: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        bodies = [m.get_body() for m in messages]
        ids = [m.message_id or "" for m in messages]
        await runtime.processor().process(bodies, ids, [m.application_properties for m in messages])
