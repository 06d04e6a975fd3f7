"""``python -m local tasks ...`` and ``python -m local stats``: each command is one or a few API calls
and a printout (a table, or the API's own JSON with ``--json``)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from local.cli.client import ApiClient, ApiError, Target
from local.cli.tables import age, clip, duration, pairs, span, table

#: The most tasks the API gives in one page; a larger ``--limit`` follows the cursor.
API_PAGE = 200


class _Action(Protocol):
    def __call__(self, client: ApiClient, args: argparse.Namespace, /) -> int: ...


def add_commands(commands: Any) -> None:
    """Add ``tasks`` and ``stats`` to ``python -m local``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the app's address (default http://localhost:<Host.LocalHttpPort or 7071>)"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    common.add_argument(
        "--app-dir", type=Path, default=Path.cwd(), help="folder of the app, for its port and key (cwd)"
    )

    tasks = commands.add_parser(
        "tasks", help="list, show, retry, cancel tasks; redrive or purge dead letters"
    )
    actions = tasks.add_subparsers(
        dest="action", required=True, metavar="{list,show,retry,cancel,redrive,purge}"
    )
    listing = actions.add_parser("list", parents=[common], help="tasks newest first")
    listing.add_argument("--status", help="queued, scheduled, running, succeeded, failed, dead-lettered...")
    listing.add_argument("--type", help="only tasks of this type")
    listing.add_argument("--limit", type=_positive, default=20, help="at most this many (default 20)")
    listing.set_defaults(handler=functools.partial(run, _list))
    for name, handler, text in (
        ("show", _show, "one task: status, attempts, timings, result or error"),
        ("retry", _retry, "send a failed or dead-lettered task again"),
        ("cancel", _cancel, "cancel a queued or scheduled task"),
    ):
        one = actions.add_parser(name, parents=[common], help=text)
        one.add_argument("id", help="the task's id")
        one.set_defaults(handler=functools.partial(run, handler))
    redrive = actions.add_parser("redrive", parents=[common], help="send every dead-lettered task again")
    redrive.add_argument("--type", help="only dead letters of this type")
    redrive.set_defaults(handler=functools.partial(run, _redrive))
    purge = actions.add_parser("purge", parents=[common], help="empty the dead-letter queue")
    purge.add_argument("--type", help="only dead letters of this type")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=functools.partial(run, _purge))

    stats = commands.add_parser("stats", parents=[common], help="backlog, totals, throughput, latency, cache")
    stats.set_defaults(handler=functools.partial(run, _stats))


def run(action: _Action, args: argparse.Namespace) -> int:
    """Run ``action`` against the app; 0, or 1 with one ``Error:`` line on stderr."""
    client = ApiClient(Target.find(args.url, args.app_dir, os.environ))
    try:
        code = action(client, args)
    except ApiError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return code


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {
            "status": args.status,
            "type": args.type,
            "limit": min(API_PAGE, args.limit - len(found)),
            "cursor": cursor,
        }
        page = client.call("GET", "tasks", query)
        found += page["tasks"]
        cursor = page.get("cursor")
        if not cursor or len(found) >= args.limit:
            break
    if args.json:
        return _print_json({"tasks": found, "cursor": cursor})
    if not found:
        print("No tasks" + _filters(args))
        return 0
    now = datetime.now(UTC)
    rows = [
        (
            task["id"],
            task.get("type"),
            task.get("status"),
            task.get("priority", "normal"),
            task.get("attempts"),
            age(task.get("submitted_at"), now),
            span(task.get("started_at"), task.get("finished_at")),
            clip(task.get("error"), 60),
        )
        for task in found
    ]
    print(
        table(
            ("ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "AGE", "TOOK", "ERROR"),
            rows,
            right=("ATTEMPTS", "AGE", "TOOK"),
        )
    )
    more = f"; more with --limit {args.limit * 2}" if cursor else ""
    print(f"\n{len(found)} task{'s' if len(found) != 1 else ''}{_filters(args)}, newest first{more}")
    return 0


def _filters(args: argparse.Namespace) -> str:
    said = [f"{name} {value}" for name, value in (("status", args.status), ("type", args.type)) if value]
    return f" ({', '.join(said)})" if said else ""


def _show(client: ApiClient, args: argparse.Namespace) -> int:
    task = client.call("GET", f"tasks/{args.id}", not_found=f"no task {args.id}")
    if args.json:
        return _print_json(task)
    rows: list[tuple[str, object]] = [
        ("id", task["id"]),
        ("type", task.get("type")),
        ("status", task.get("status")),
        ("attempts", task.get("attempts")),
        ("priority", task.get("priority", "normal")),
        ("submitted", task.get("submitted_at")),
        ("started", task.get("started_at")),
        ("finished", task.get("finished_at")),
        ("took", span(task.get("started_at"), task.get("finished_at"))),
    ]
    rows += [(name, task[key]) for name, key in (("due", "due_at"), ("retry at", "retry_at")) if key in task]
    if "result" in task:
        rows.append(("result", json.dumps(task["result"])))
    if task.get("error"):
        rows.append(("error", task["error"]))
    print(pairs(rows))
    if task.get("traceback"):
        print(f"\n{task['traceback'].rstrip()}")
    return 0


def _retry(client: ApiClient, args: argparse.Namespace) -> int:
    answer = client.call("POST", f"tasks/{args.id}/retry", not_found=f"no task {args.id}")
    return _print_json(answer) if args.json else _say(f"Task {args.id} sent again: {answer['status']}")


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    answer = client.call("DELETE", f"tasks/{args.id}", not_found=f"no task {args.id}")
    return _print_json(answer) if args.json else _say(f"Task {args.id} {answer['status']}")


def _redrive(client: ApiClient, args: argparse.Namespace) -> int:
    answer = client.call("POST", "dead-letters/redrive", {"type": args.type})
    of = f" of type {args.type}" if args.type else ""
    return (
        _print_json(answer)
        if args.json
        else _say(f"Sent {answer['redriven']} dead-lettered task(s){of} again")
    )


def _purge(client: ApiClient, args: argparse.Namespace) -> int:
    of = f" of type {args.type}" if args.type else ""
    if not args.yes:
        if not sys.stdin.isatty():
            print("Error: purge deletes dead letters for good; pass --yes to confirm", file=sys.stderr)
            return 2
        reply = input(f"Delete every dead letter{of} from the app at {client.url}? [y/N] ")
        if reply.strip().lower() not in ("y", "yes"):
            return _say("Nothing purged")
    answer = client.call("DELETE", "dead-letters", {"type": args.type})
    return _print_json(answer) if args.json else _say(f"Purged {answer['purged']} dead letter(s){of}")


def _stats(client: ApiClient, args: argparse.Namespace) -> int:
    stats = client.call("GET", "stats")
    if args.json:
        return _print_json(stats)
    print(render_stats(stats))
    return 0


def render_stats(stats: dict[str, Any]) -> str:
    """``/api/stats`` as a few aligned lines and a table per task type."""
    backlog = stats.get("backlog")
    totals = stats["totals"]
    throughput = stats["throughput"]
    cache = stats["cache"]
    admission = stats["admission"]
    ratio = f"{cache['hit_ratio']:.0%}" if cache.get("hit_ratio") is not None else "-"
    rows: list[tuple[str, object]] = [
        (
            "backlog",
            (
                f"{backlog['active']} active, {backlog.get('scheduled') or 0} scheduled, "
                f"{backlog['dead_lettered']} dead-lettered on {backlog['queue']} "
                f"(taken {duration(backlog.get('age_seconds'))} ago)"
            )
            if backlog
            else "not taken yet (the backlog timer has not run)",
        ),
        *(
            [("lanes", ", ".join(f"{count} {lane}" for lane, count in backlog["lanes"].items()) + " active")]
            if backlog and backlog.get("lanes")
            else []
        ),
        ("admission", f"{admission['unfinished']} unfinished of {admission['limit']} admitted at most"),
        (
            "totals",
            ", ".join(f"{totals[name]} {name.replace('_', '-')}" for name in totals),
        ),
        (
            "throughput",
            f"{throughput['per_second']:g} tasks/s ({throughput['processed']} in the last "
            f"{throughput['window_seconds']} s)",
        ),
        ("cache", f"{cache['hits']} hits, {cache['misses']} misses ({ratio}), {cache['keys']} live keys"),
    ]
    latency = stats["latency_seconds"]
    quantiles = list(latency["processing"])
    latency_rows = [
        (name.replace("_", " "), *(duration(latency[name][q]) for q in quantiles)) for name in latency
    ]
    limits = stats.get("limits", {})
    per_type = [
        (
            name,
            figures["accepted"],
            figures["processed"],
            figures["failed"],
            figures.get("throttled", 0),
            _limits(limits.get(name)),
        )
        for name, figures in stats["per_type"].items()
    ]
    parts = [
        pairs(rows),
        table(
            ("LATENCY", *(q.upper() for q in quantiles)), latency_rows, right=[q.upper() for q in quantiles]
        ),
    ]
    if per_type:
        parts.append(
            table(
                ("TYPE", "ACCEPTED", "PROCESSED", "FAILED", "THROTTLED", "LIMITS"),
                per_type,
                right=("ACCEPTED", "PROCESSED", "FAILED", "THROTTLED"),
            )
        )
    return "\n\n".join(parts)


def _limits(limits: dict[str, Any] | None) -> str | None:
    if not limits:
        return None
    parts = [limits["rate_limit"]] if limits.get("rate_limit") else []
    parts += [f"{limits['concurrency']} at once"] if limits.get("concurrency") else []
    return ", ".join(parts)


def _say(line: str) -> int:
    print(line)
    return 0


def _print_json(document: Any) -> int:
    print(json.dumps(document, indent=2))
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {text!r}")
    return int(text)
