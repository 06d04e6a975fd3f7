"""What a function app and the host that runs it must agree on, and nothing else.

Both tasklane's app code and the offline host in ``local/host/`` import this package; it imports
nothing else of ``shared``, so the host can use it without pulling in the app.

* :mod:`shared.platform.keyvault`: Key Vault reference syntax (``@Microsoft.KeyVault(...)``) and a
  reader for the secrets they name;
* :mod:`shared.platform.rabbitmq_topology`: a work queue's names, dead-letter exchange and queue,
  and declaring them the way both the sender and the ``rabbitMQTrigger`` expect.
"""
