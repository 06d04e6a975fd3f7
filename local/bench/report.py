"""The bench's report as a table on the terminal: the ceiling, the phases, the ratios and the targets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local.bench.targets import verdict_word

#: Ceilings further apart than this (over their mean) say the run shared the machine.
BUSY_SPREAD = 0.2
_RATIO_OF_PHASE = {
    "single": "single_to_ceiling",
    "batch": "batch_to_ceiling",
    "traced": "traced_single_to_ceiling",
}


def _ms(latency: Mapping[str, float], name: str) -> str:
    return f"{latency[name]:.1f}" if name in latency else "-"


def _rounds(figures: list[float]) -> str:
    return "/".join(f"{figure:g}" for figure in figures)


def _phases(report: Mapping[str, Any]) -> None:
    header = (
        f"{'phase':<8}{'tasks':>8}{'non-2xx':>9}{'accepted/s':>12}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}"
        f"{'e2e tasks/s':>13}{'x ceiling':>11}{'lost':>6}{'host CPU us/task':>18}{'machine CPU us/task':>21}"
    )
    print(header)
    print("-" * len(header))
    ratios = report.get("ratios", {})
    for p in report["phases"]:
        ratio = ratios.get(_RATIO_OF_PHASE.get(p["name"], ""))
        print(
            f"{p['name']:<8}{p['accepted']:>8}{p['non_2xx']:>9}{p['accepted_per_second']:>12.0f}"
            f"{_ms(p['latency_ms'], 'p50'):>8}{_ms(p['latency_ms'], 'p99'):>8}"
            f"{_ms(p['latency_ms'], 'p99.9'):>10}{p['processed_per_second']:>13.0f}"
            f"{'-' if ratio is None else f'{ratio:.2f}':>11}{p['lost']:>6}{p['host_cpu_us_per_task']:>18.0f}"
            f"{p.get('machine_cpu_us_per_task', 0):>21.0f}"
        )
    for p in report["phases"]:
        if p["non_2xx"]:
            print(
                f"  {p['name']}: {p['non_2xx']:,} requests not accepted (statuses {p['statuses']});"
                " its figures are suspect (see the host's log under .services/bench/)"
            )


def _details(report: Mapping[str, Any]) -> None:
    loop = report.get("openloop")
    if loop:
        latency, lag = loop["latency_ms"], loop["send_lag_ms"]
        print(
            f"open loop: {loop['offered_per_second']:,.0f} POSTs/s offered,"
            f" {loop['achieved_per_second']:,.0f}/s answered, {loop['accepted']:,} accepted:"
            f" accept latency p50 {_ms(latency, 'p50')} ms,"
            f" p99 {_ms(latency, 'p99')} ms, p99.9 {_ms(latency, 'p99.9')} ms from when each was due"
            f" (p99 {_ms(loop['from_sent_ms'], 'p99')} ms from when it went out; sent late by p99"
            f" {_ms(lag, 'p99')} ms; generator CPU {loop['generator_cpu_percent']:g} %)"
        )
    tracing = report.get("tracing")
    if tracing:
        sent = ", ".join(
            f"{path} {n['requests']:,} requests {n['bytes'] / 1e6:.1f} MB"
            for path, n in tracing["exported"].items()
        )
        ratio = report.get("ratios", {}).get("traced_to_untraced")
        share = "-" if ratio is None else f"{ratio:.2f}"
        print(f"tracing on: {share} of the rate with it off; exported {sent or 'nothing'}")
    for mode, figures in (report.get("direct") or {}).items():
        print(
            f"direct, telemetry {mode}: the app's CPU per echo task"
            f" {figures['accept_cpu_us']:g} us accepting, {figures['process_cpu_us']:g} us processing"
            f" (median of rounds {_rounds(figures['accept_cpu_us_rounds'])} and"
            f" {_rounds(figures['process_cpu_us_rounds'])}; {figures['accepted_per_second']:,.0f} accepted/s,"
            f" {figures['processed_per_second']:,.0f} processed/s on one core, without the host)"
        )
    rss = f"peak RSS of the host: {report.get('peak_rss_mb', '-')} MB"
    if tracing:
        rss += f" ({tracing['peak_rss_mb']} MB with tracing)"
    print(f"{rss}; cold start (import + index): {report['cold_start_ms']} ms")


def print_table(report: Mapping[str, Any]) -> None:
    machine = report["machine"]
    load = f"load average {machine['load_before'][0]:g} before, {machine['load_after'][0]:g} after"
    print(f"\ntasklane bench ({machine['cpus']} cpus, Python {machine['python']}; {load})\n")
    raw = report.get("ceiling")
    if raw:
        each = " and ".join(f"{run['per_second']:,.0f}" for run in raw["runs"])
        print(
            f"ceiling (raw queue path, no HTTP, no app): {raw['per_second']:,.0f} messages/s (mean of {each},"
            f" before and after); client CPU {raw['publisher_cpu_us_per_message']:g} us/message publishing,"
            f" {raw['consumer_cpu_us_per_message']:g} us/message consuming;"
            f" machine CPU {raw.get('machine_cpu_us_per_message', 0):g} us/message (both, RabbitMQ, Valkey)"
        )
        if raw["spread"] > BUSY_SPREAD:
            print(
                f"  the two differ by {raw['spread']:.0%}: the machine was busy with other work meanwhile,"
                " so every figure of this run is as uncertain; run it again"
            )
        print()
    _phases(report)
    print()
    _details(report)
    print("\ntargets:")
    for target in report["targets"]:
        measured = "-" if target["measured"] is None else f"{round(target['measured'], 3):g}"
        verdict = verdict_word(target["met"])
        print(f"  {target['target']:<40} {target['bound']:>8}  measured {measured:>8}  {verdict}")
    print()
