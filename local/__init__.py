"""``python -m local``: the offline Functions host, and tasklane's dev tooling beside it.

* :mod:`local.host`: Azure Functions for Python without Core Tools, Docker or .NET. It runs any
  function app and imports nothing of tasklane's (the boundary is checked by import-linter);
* :mod:`local.services` (Valkey, RabbitMQ, Azurite) and :mod:`local.bench` (the benchmark): tasklane's
  own tooling, which may use the host but never the other way round.
"""
