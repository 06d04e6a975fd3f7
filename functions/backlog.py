"""Timer: snapshot the queue backlog through the broker into Valkey (stats, gauges) and reconcile the
live backlog count admission uses."""

import logging

import azure.functions as func

from shared.pipeline.root import pipeline
from shared.pipeline.settings import broker_system

bp = func.Blueprint()
log = logging.getLogger(__name__)

# A first snapshot at start is a local convenience only: in Azure every new instance would fire it, and
# Microsoft advises against runOnStartup in production (functions-bindings-timer-trigger, "Caution").
_RUN_ON_STARTUP = broker_system() != "servicebus"


@bp.timer_trigger(
    arg_name="timer", schedule="%BACKLOG_SCHEDULE%", run_on_startup=_RUN_ON_STARTUP, use_monitor=False
)
async def backlog_snapshot(timer: func.TimerRequest) -> None:
    backlog = await pipeline().snapshot_backlog()
    if backlog is None:  # the broker or Valkey is unreachable; the pipeline said so once
        return
    log.info(
        "Backlog of %s: %d active, %d dead-lettered", backlog.queue, backlog.active, backlog.dead_lettered
    )
