"""Functions to run by hand through the host's admin API: a timer that would not fire for months,
and a RabbitMQ-triggered function; each logs what it was given."""

import logging

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
log = logging.getLogger("manual_app")


@app.route(route="health")
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=False, use_monitor=False)
def new_year(timer: func.TimerRequest) -> None:
    log.info("new_year ran: past_due=%s schedule=%s", timer.past_due, timer.schedule)


@app.generic_trigger(
    arg_name="message",
    type="rabbitMQTrigger",
    queue_name="%MANUAL_QUEUE%",
    connection_string_setting="RabbitMQConnection",
)
def on_message(message: str) -> None:
    log.info("on_message got %r", message)


@app.generic_trigger(
    arg_name="message",
    type="rabbitMQTrigger",
    queue_name="%MANUAL_QUEUE%-bytes",
    connection_string_setting="RabbitMQConnection",
)
def on_bytes(message: bytes) -> None:
    log.info("on_bytes got %r", message)
