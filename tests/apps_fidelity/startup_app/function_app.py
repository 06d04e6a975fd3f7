"""An app with one function of each fate at start: listed and served, in error, and disabled."""

import azure.functions as func

print("startup app imported")

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> str:
    return "ok"


@app.route(route="ping")
def ping(req: func.HttpRequest) -> str:
    return "pong"


@app.generic_trigger(
    arg_name="message",
    type="rabbitMQTrigger",
    queue_name="%FIDELITY_QUEUE%",
    connection_string_setting="RabbitMQConnection",
)
def take(message: str) -> None:
    print(message)


# The host accepts only letters and digits in a binding name: this function is in error.
@app.route(route="underscored", trigger_arg_name="the_request")
def underscored(the_request: func.HttpRequest) -> str:
    return "never served"
