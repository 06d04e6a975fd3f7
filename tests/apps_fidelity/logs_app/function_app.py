"""A small app whose functions log, print and fail the ways the host's console must show."""

# The root logger on purpose: it is what most apps (and the worker's own test apps) log to.
# ruff: noqa: LOG015

import asyncio
import logging
import sys
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
named = logging.getLogger("fidelity.app")


@app.route(route="health")
def health(req: func.HttpRequest) -> str:
    return "ok"


@app.route(route="chatty")
def chatty(req: func.HttpRequest) -> str:
    logging.info("chatty info")
    logging.debug("chatty debug")
    named.warning("chatty warning from a named logger")
    try:
        raise KeyError("looked up")
    except KeyError:
        logging.exception("chatty handled an error")
    logging.getLogger("azure.functions").error("chatty sdk error")
    print("chatty printed")
    print("chatty says it failed on stderr", file=sys.stderr)
    return "ok"


@app.route(route="quiet")
def quiet(req: func.HttpRequest) -> str:
    logging.info("quiet info")
    logging.warning("quiet warning")
    return "ok"


@app.route(route="threads")
async def threads(req: func.HttpRequest, context: func.Context) -> str:
    def untagged() -> None:
        logging.info("from a thread of its own")

    def tagged() -> None:
        context.thread_local_storage.invocation_id = context.invocation_id
        logging.info("from a thread that names its invocation")

    async def child() -> None:
        logging.info("from a task the function started")

    for target in (untagged, tagged):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    await asyncio.create_task(child())
    return "ok"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> str:
    raise ValueError("boom went the function")
