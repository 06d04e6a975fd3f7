"""OpenTelemetry for tasklane: providers configured once per process, and the pipeline's spans and metrics.

:func:`configure` reads the standard ``OTEL_*`` variables. With an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``; SigNoz Cloud needs ``OTEL_EXPORTER_OTLP_HEADERS=signoz-ingestion-key=…``)
it installs tracer, meter and logger providers exporting OTLP over HTTP/protobuf; with
``TASKLANE_TRACE_CONSOLE=1`` it logs one compact line per finished trace. With neither, it installs
nothing and does not import the SDK, and the pipeline gets the silent base hooks: a task costs a few
empty calls. The pipeline and the brokers never import this package; the composition root hands them
what :func:`configure` returns.

In Azure the headers setting is a Key Vault reference. One the platform could not resolve keeps its own
text, which is no header at all (every export would fail on it), so OTLP export is then left off with a
warning naming the setting, as the Valkey password's settings treat an unresolved reference.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import logging
import os
import socket
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from shared.pipeline.hooks import Hooks
from shared.platform.keyvault import is_reference
from shared.telemetry import instruments

log = logging.getLogger(__name__)

TRACE_CONSOLE = "TASKLANE_TRACE_CONSOLE"
OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
EXEMPLAR_FILTER = "OTEL_METRICS_EXEMPLAR_FILTER"
#: The lowest level of the log records exported over OTLP.
LOG_EXPORT_LEVEL = "TASKLANE_OTLP_LOG_LEVEL"
#: By default warnings and errors: a task's success is in its trace already (span, status, duration),
#: and a line per task would be the largest share of what a busy app exports.
DEFAULT_LOG_EXPORT_LEVEL = logging.WARNING
SPAN_QUEUE_SIZE = 32768

#: The task a log record belongs to (set while a task's span is current).
current_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tasklane_task_id", default="")

_hooks: Hooks | None = None


@dataclass(frozen=True)
class TelemetrySettings:
    """What :func:`configure` needs from the environment; the exporters read the rest of ``OTEL_*``."""

    endpoint: str | None
    console: bool
    sdk_disabled: bool
    service_name: str
    environment: str
    site_name: str | None
    instance: str
    #: The OTLP headers are a Key Vault reference the platform left unresolved: no OTLP export.
    unresolved_headers: bool = False
    #: Log records below this level stay on the console, not exported (``TASKLANE_OTLP_LOG_LEVEL``).
    log_export_level: int = DEFAULT_LOG_EXPORT_LEVEL

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> TelemetrySettings:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        site = env.get("WEBSITE_SITE_NAME") or None
        unresolved = is_reference(env.get(OTLP_HEADERS, ""))
        return cls(
            endpoint=None if unresolved or not endpoint else endpoint.strip() or None,
            console=env.get(TRACE_CONSOLE, "").strip().lower() in ("1", "true", "yes"),
            sdk_disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
            service_name=env.get("OTEL_SERVICE_NAME") or "tasklane",
            environment=env.get("AZURE_FUNCTIONS_ENVIRONMENT") or env.get("TASKLANE_PROFILE") or "local",
            site_name=site,
            instance=env.get("WEBSITE_INSTANCE_ID") or f"{socket.gethostname()}-{os.getpid()}",
            unresolved_headers=unresolved,
            log_export_level=log_export_level(env.get(LOG_EXPORT_LEVEL, "")),
        )

    @property
    def enabled(self) -> bool:
        return not self.sdk_disabled and (self.endpoint is not None or self.console)


def log_export_level(text: str) -> int:
    """``TASKLANE_OTLP_LOG_LEVEL``: a level name (``INFO``, ``warning``, …); empty is the default.

    An unknown name keeps the default and says so, naming the setting and the levels it takes.
    """
    name = text.strip().upper()
    if not name:
        return DEFAULT_LOG_EXPORT_LEVEL
    level = logging.getLevelNamesMapping().get(name)
    if level is None:
        log.warning(
            "%s=%r is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL); exporting %s and above",
            LOG_EXPORT_LEVEL,
            text,
            logging.getLevelName(DEFAULT_LOG_EXPORT_LEVEL),
        )
        return DEFAULT_LOG_EXPORT_LEVEL
    return level


def configure(environ: Mapping[str, str] | None = None) -> Hooks:
    """Install the providers once per process and return the pipeline's hooks; later calls return the
    same hooks. Telemetry off: the silent :class:`~shared.pipeline.hooks.Hooks`, and no SDK import."""
    global _hooks
    if _hooks is None:
        settings = TelemetrySettings.from_environ(os.environ if environ is None else environ)
        if settings.unresolved_headers:
            log.warning(
                "%s is a Key Vault reference the platform could not resolve (is the secret in the vault,"
                " and may the app's identity read it?); OTLP export is off",
                OTLP_HEADERS,
            )
        _hooks = _install(settings) if settings.enabled else Hooks()
    return _hooks


def resource_attributes(settings: TelemetrySettings) -> dict[str, str]:
    try:
        version = importlib.metadata.version("tasklane")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    attributes = {
        "service.name": settings.service_name,
        "service.version": version,
        "deployment.environment": settings.environment,
        "deployment.environment.name": settings.environment,
        "faas.name": settings.site_name or settings.service_name,
        "faas.instance": settings.instance,
    }
    if settings.site_name:
        attributes |= {"cloud.provider": "azure", "cloud.platform": "azure_functions"}
    return attributes


def _install(settings: TelemetrySettings) -> Hooks:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from shared.telemetry.hooks import TracingHooks

    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES, which wins over these defaults.
    resource = Resource.create(resource_attributes(settings))
    tracer_provider = TracerProvider(resource=resource)
    if settings.console:
        from shared.telemetry.console import ConsoleTraceProcessor

        tracer_provider.add_span_processor(ConsoleTraceProcessor())
    if settings.endpoint:
        _install_exporters(resource, tracer_provider, settings.log_export_level)
    trace.set_tracer_provider(tracer_provider)
    instruments.instruments.create(metrics.get_meter("tasklane"))
    logging.setLogRecordFactory(_correlated_record_factory(logging.getLogRecordFactory()))
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(CorrelatedFormatter(handler.formatter))
    log.info("Telemetry on: OTLP %s, console traces %s", settings.endpoint or "off", settings.console)
    return TracingHooks(metrics.get_meter_provider(), tracer_provider.get_tracer("tasklane"))


def _install_exporters(resource: Any, tracer_provider: Any, log_level: int) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK's default queue (2,048 spans) overflows within a second at full load and drops
    # spans; a larger one rides out a burst. OTEL_BSP_MAX_QUEUE_SIZE still decides when set.
    queue_size = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else SPAN_QUEUE_SIZE
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=queue_size))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    # No exemplars unless OTEL_METRICS_EXEMPLAR_FILTER asks: SigNoz stores none (SigNoz/signoz#12433),
    # and the SDK's default samples one at every measurement made inside a sampled span.
    exemplars = None if os.environ.get(EXEMPLAR_FILTER) else AlwaysOffExemplarFilter()
    metrics.set_meter_provider(
        MeterProvider(resource=resource, metric_readers=[reader], exemplar_filter=exemplars)
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    with warnings.catch_warnings():
        # Deprecated in favour of a package we do not ship; it still does exactly this job.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=log_level, logger_provider=logger_provider)
    handler.addFilter(lambda record: not record.name.startswith(("opentelemetry", "urllib3")))
    logging.getLogger().addHandler(handler)


def _correlated_record_factory(make: Any) -> Any:
    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made: logging.LogRecord = make(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        made.otelTraceID = f"{context.trace_id:032x}" if context.is_valid else "0"
        made.otelSpanID = f"{context.span_id:016x}" if context.is_valid else "0"
        made.task_id = current_task_id.get()
        return made

    return record


class CorrelatedFormatter(logging.Formatter):
    """The console's own format, plus ``[trace … span … task …]`` on a record made inside a span."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        trace_id = getattr(record, "otelTraceID", "0")
        if trace_id == "0":
            return text
        task = getattr(record, "task_id", "")
        suffix = f" task={task}" if task else ""
        return f"{text} [trace={trace_id} span={getattr(record, 'otelSpanID', '0')}{suffix}]"
