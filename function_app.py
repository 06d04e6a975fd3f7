"""Composition root: the FunctionApp and its blueprints, nothing else."""

import azure.functions as func

from functions import health

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(health.bp)
