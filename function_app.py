"""Composition root: telemetry, the FunctionApp and its blueprints, nothing else."""

import azure.functions as func

from functions import backlog, health, processing, tasks_api
from shared import telemetry

# Once per process, before any function runs; without an OTLP endpoint it installs nothing.
telemetry.configure()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health.bp, tasks_api.bp, processing.bp, backlog.bp):
    app.register_functions(blueprint)
