"""HTTP functions on a blueprint; the app that registers it decides their auth level."""

import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("blueprint_app")


@bp.route(route="health")
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@bp.route(route="default_template")
def default_template(req: func.HttpRequest) -> func.HttpResponse:
    log.info("Python HTTP trigger function processed a request.")
    name = req.params.get("name")
    if not name:
        try:
            name = req.get_json().get("name")
        except ValueError:
            name = None
    if name:
        return func.HttpResponse(f"Hello, {name}. This HTTP triggered function executed successfully.")
    return func.HttpResponse("This HTTP triggered function executed successfully.", status_code=200)


@bp.route(route="http_func")
def http_func(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"{req.method} from the blueprint")
