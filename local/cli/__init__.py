"""The command line's operator commands: tasks and stats, through the running app's HTTP API.

Tooling beside the host: it talks to the app over HTTP with the app's key, as any client would, so it
works the same against our host, ``func start`` and Azure (``--url``).
"""

from local.cli.commands import add_commands

__all__ = ["add_commands"]
