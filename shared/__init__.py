"""tasklane's framework: settings, task envelope and registry, brokers, Valkey store, telemetry.

Plain Python that runs anywhere; it never imports ``azure.functions``. Only the modules that wrap
an SDK import it.
"""
