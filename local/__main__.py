"""``python -m local``: run the offline host, and the services it talks to.

    python -m local start [--app-dir DIR] [--port N] [--no-services]
    python -m local services {up,down,status} [--only valkey,rabbitmq,azurite] [--ports valkey=16379,...]
        [--app-dir DIR]   (`up` also declares the app's RabbitMQ queues, which its triggers need)
    python -m local keys [--app-dir DIR]
    python -m local bench [--single N] [--batches N] [--env NAME=VALUE ...]
    python -m local tasks {list,show,retry,cancel,redrive,purge} [--url URL] [--json] ...
    python -m local stats [--url URL] [--json]

``tasks`` and ``stats`` talk to the running app's HTTP API with its key; they exit 1 with one
``Error:`` line when it refuses or does not answer, and 2 for a usage error.

``services status`` exits 3 when a service does not answer, as an LSB init script's status does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from local import services
from local.cli import add_commands


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; the process exit code."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        code: int = args.handler(args)
    except services.ServicesError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{start,services,keys,bench,tasks,stats}"
    )

    start = commands.add_parser("start", help="run the function app in the offline host")
    start.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder of function_app.py (cwd)")
    start.add_argument("--port", type=int, default=None, help="HTTP port (Host.LocalHttpPort, else 7071)")
    start.add_argument("--no-services", action="store_true", help="do not ensure Valkey, RabbitMQ, Azurite")
    start.set_defaults(handler=_start)

    group = commands.add_parser("services", help="ensure, stop or show Valkey, RabbitMQ and Azurite")
    group.add_argument("action", choices=["up", "down", "status"])
    group.add_argument("--only", type=_names, default=services.NAMES, help="comma-separated services")
    group.add_argument(
        "--ports", type=_ports, default={}, help="other ports, e.g. valkey=16379 (Azurite uses 3 from there)"
    )
    group.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="the app whose queues `up` declares (cwd)"
    )
    group.set_defaults(handler=_services)

    keys = commands.add_parser("keys", help="print the host key generated for this app")
    keys.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder of function_app.py (cwd)")
    keys.set_defaults(handler=_keys)

    bench = commands.add_parser("bench", help="load the pipeline and report its figures", add_help=False)
    bench.set_defaults(handler=_bench)
    add_commands(commands)
    return parser


def _start(args: argparse.Namespace) -> int:
    if not args.no_services:
        services.ensure()
        _declare_queues(args.app_dir)
    from local.host.runner import run  # late: `services` stays quick and needs none of the host's packages

    return run(args.app_dir, args.port)


def _keys(args: argparse.Namespace) -> int:
    from local.host.http.keys import KEYS_FILE, read_generated_key

    key = read_generated_key(args.app_dir / KEYS_FILE)
    if key is None:
        print(
            f"No generated key in {args.app_dir / KEYS_FILE}: start the host once, or set FUNCTIONS_HOST_KEY",
            file=sys.stderr,
        )
        return 1
    print(key)
    return 0


def _bench(args: argparse.Namespace) -> int:
    services.ensure(("valkey", "rabbitmq"))
    from local.bench.runner import main as bench_main

    return bench_main(args.rest)


def _services(args: argparse.Namespace) -> int:
    if args.action == "up":
        services.ensure(args.only, ports=args.ports)
        if "rabbitmq" in args.only and "rabbitmq" not in args.ports:
            _declare_queues(args.app_dir)
        return 0
    if args.action == "down":
        services.down(args.only, ports=args.ports)
        return 0
    found = services.status(args.only, ports=args.ports)
    for line in found:
        print(line)
    return 0 if all(line.answering for line in found) else 3


def _declare_queues(app_dir: Path) -> None:
    """The app's queues, which its RabbitMQ triggers need before they start (they declare none)."""
    from local.services.topology import declare_for_app  # late: aio-pika only when declaring

    declare_for_app(app_dir, os.environ)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in services.NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(services.NAMES)}, not {text!r}")
    return names


def _ports(text: str) -> dict[str, int]:
    ports: dict[str, int] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        name, _, port = pair.partition("=")
        if name not in services.NAMES or not port.isdigit() or not 0 < int(port) < 65536:
            raise argparse.ArgumentTypeError(
                f"expected NAME=PORT[,NAME=PORT], e.g. valkey=16379; got {pair!r}"
            )
        ports[name] = int(port)
    return ports


if __name__ == "__main__":
    sys.exit(main())
