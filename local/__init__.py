"""The tasklane offline host: Azure Functions for Python without Core Tools, Docker or .NET.

It indexes a ``function_app.py`` with the ``azure-functions`` library as the Python worker does,
and runs its HTTP, RabbitMQ, Service Bus and timer triggers against real servers.
"""
