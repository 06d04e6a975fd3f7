"""Composition root: the app's task types and telemetry, the FunctionApp and its blueprints."""

import azure.functions as func

from shared import tasks, telemetry
from shared.pipeline import root

# Once per process, before any function runs; without an OTLP endpoint telemetry installs nothing.
root.configure(tasks.registry, telemetry.configure())

from functions import backlog, dashboard, docs, health, metrics, processing, tasks_api  # noqa: E402  (after telemetry)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health.bp, tasks_api.bp, metrics.bp, processing.bp, backlog.bp, dashboard.bp, docs.bp):
    app.register_functions(blueprint)
