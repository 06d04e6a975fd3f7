"""Composition root: telemetry, the FunctionApp and its blueprints, nothing else."""

from shared import telemetry

# Before the blueprints import anything that logs or traces, once per process.
telemetry.configure()

import azure.functions as func  # noqa: E402

from functions import backlog, health, processing, tasks_api  # noqa: E402

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health.bp, tasks_api.bp, processing.bp, backlog.bp):
    app.register_functions(blueprint)
