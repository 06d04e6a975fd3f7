"""The worker's blueprint test apps in one (``tests/endtoend/blueprint_functions``): a blueprint
imported from a folder of its own, registered beside a function of the app itself."""

import azure.functions as func
from blueprint_directory.blueprint import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)


@app.route(route="return_http")
def return_http(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<h1>Hello World™</h1>", mimetype="text/html")
