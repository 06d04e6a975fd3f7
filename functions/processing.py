"""Queue-triggered processing: Service Bus in Azure, RabbitMQ in the local profile."""

import azure.functions as func

from shared import pipeline
from shared.config import current_profile

bp = func.Blueprint()

if current_profile() == "local":

    @bp.generic_trigger(
        arg_name="message",
        type="rabbitMQTrigger",
        queue_name="%TASKS_QUEUE%",
        connection_string_setting="RabbitMQConnection",
    )
    async def process_tasks(message: bytes) -> None:
        await pipeline.process(message)

else:

    @bp.service_bus_queue_trigger(
        arg_name="messages",
        queue_name="%TASKS_QUEUE%",
        connection="ServiceBusConnection",
        cardinality=func.Cardinality.MANY,
    )
    async def process_tasks(messages: list[func.ServiceBusMessage]) -> None:
        for message in messages:
            await pipeline.process(message.get_body())
