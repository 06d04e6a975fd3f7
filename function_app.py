"""Composition root: the FunctionApp and its blueprints, nothing else."""

import azure.functions as func

from functions import backlog, health, processing, tasks_api

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health.bp, tasks_api.bp, processing.bp, backlog.bp):
    app.register_functions(blueprint)
