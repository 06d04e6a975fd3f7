"""Timer: snapshot the queue backlog through the broker into Valkey (stats and backpressure)."""

import logging

import azure.functions as func

from shared import telemetry
from shared.pipeline import root as runtime

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%BACKLOG_SCHEDULE%", run_on_startup=True, use_monitor=False)
async def backlog_snapshot(timer: func.TimerRequest) -> None:
    backlog = await runtime.broker().backlog()
    await runtime.store().save_backlog(backlog)
    # The Functions host exports no metrics in OpenTelemetry mode: record the gauges and flush them
    # before the invocation ends (a Flex Consumption instance may be frozen right after).
    telemetry.record_backlog(backlog)
    telemetry.flush_metrics()
    log.info(
        "Backlog of %s: %d active, %d dead-lettered", backlog.queue, backlog.active, backlog.dead_lettered
    )
