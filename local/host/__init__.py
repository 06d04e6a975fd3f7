"""The offline Functions host: Azure Functions for Python without Core Tools, Docker or .NET.

It imports an app's script (``function_app.py``) in one place, :func:`local.host.indexing.load_app`,
indexes it with the ``azure-functions`` library as the Python worker does, and runs its HTTP,
RabbitMQ, Service Bus and timer triggers against real servers. It imports nothing of tasklane's app
and none of its dev tooling; of ``shared`` only :mod:`shared.platform`, the facts an app and its host
must agree on.
"""
