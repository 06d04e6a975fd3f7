"""The bench's arithmetic and verdicts, from tables: percentiles, ratios to the ceiling, targets met or
not, what the open-loop generator reads off the wire, the bench's arguments and its CPU counter.
Nothing here is timed: the CPU counter is only checked to count at least what this process spent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from local.bench.ceiling import DEFAULT_PREFETCH, Ceiling, combine, host_prefetch
from local.bench.direct import Timing, summarise
from local.bench.host import machine_cpu_seconds, without_telemetry
from local.bench.latency import percentile, summary_ms
from local.bench.openloop import parse_response, request_bytes
from local.bench.runner import parser
from local.bench.targets import TARGETS, Target, judge, ratios, verdict_word


@pytest.mark.parametrize(
    ("samples", "p", "expected"),
    [
        ([7], 50, 7),
        ([7], 99.9, 7),
        ([1, 2, 3, 4], 50, 2),  # rank ceil(2) = 2
        ([1, 2, 3, 4], 51, 3),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 99.9, 100),  # too few samples: p99.9 is the largest
        (list(range(1, 1001)), 99.9, 999),  # 99.9 % of 1000 is exactly rank 999, float noise or not
        (list(range(1, 1001)), 100, 1000),
        (list(range(1, 10001)), 99.9, 9990),
    ],
)
def test_percentiles_are_nearest_rank(samples: list[int], p: float, expected: int) -> None:
    assert percentile(samples, p) == expected


@pytest.mark.parametrize("p", [0, -1, 100.1])
def test_a_percentile_outside_0_to_100_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1, 2, 3], p)


def test_latencies_in_microseconds_are_summarised_in_milliseconds_whatever_their_order() -> None:
    # Given 1,000 latencies of 1..1000 ms, shuffled
    latencies_us = [ms * 1000 for ms in range(1000, 0, -1)]
    # Then the summary reads p50, p99 and p99.9 in milliseconds
    assert summary_ms(latencies_us) == {"p50": 500.0, "p99": 990.0, "p99.9": 999.0}
    assert summary_ms([]) == {}


def _phase(name: str, rate: float, *, lost: int = 0, non_2xx: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "accepted": 1000,
        "succeeded": 1000 - lost,
        "lost": lost,
        "non_2xx": non_2xx,
        "processed_per_second": rate,
    }


def test_ratios_are_against_the_ceiling_of_the_same_run_and_tracing_against_tracing_off() -> None:
    report = {
        "ceiling": {"per_second": 4000.0},
        "phases": [_phase("single", 3400), _phase("batch", 6400), _phase("traced", 2550)],
    }
    assert ratios(report) == pytest.approx(
        {
            "single_to_ceiling": 0.85,
            "batch_to_ceiling": 1.6,
            "traced_single_to_ceiling": 0.6375,
            "traced_to_untraced": 0.75,
        }
    )


def test_a_ratio_is_not_measured_when_a_part_was_left_out() -> None:
    report = {"phases": [_phase("single", 3400)]}  # no ceiling, no batch, no tracing
    assert set(ratios(report).values()) == {None}


def _report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "ceiling": {"per_second": 4000.0},
        "phases": [_phase("single", 3200), _phase("batch", 6000), _phase("traced", 2560)],
        "openloop": {"requests": 100, "accepted": 100, "lost": 0, "latency_ms": {"p99": 15.0}},
        "direct": {"off": {"process_cpu_us": 100.0, "accept_cpu_us": 40.0}},
        "cold_start_ms": 150.0,
    }
    report.update(overrides)
    report["ratios"] = ratios(report)
    return report


def _verdicts(report: dict[str, Any]) -> dict[str, bool | None]:
    return {found["target"]: found["met"] for found in judge(report)}


def test_figures_exactly_on_their_bounds_meet_every_target() -> None:
    assert set(_verdicts(_report()).values()) == {True}


@pytest.mark.parametrize(
    ("overrides", "missed"),
    [
        (
            {"phases": [_phase("single", 3199), _phase("batch", 6000), _phase("traced", 2560)]},
            # a slower single-task phase also makes tracing's share larger: only the ceiling ratio misses
            {"single-task end to end / ceiling"},
        ),
        (
            {"phases": [_phase("single", 3200), _phase("batch", 5999), _phase("traced", 2560)]},
            {"batches end to end / ceiling"},
        ),
        (
            {"phases": [_phase("single", 3200), _phase("batch", 6000), _phase("traced", 2559)]},
            {"single-task, tracing on / off"},
        ),
        (
            {"openloop": {"requests": 100, "accepted": 100, "lost": 0, "latency_ms": {"p99": 15.01}}},
            {"open-loop p99 accept latency, ms"},
        ),
        (
            {"direct": {"off": {"process_cpu_us": 100.1, "accept_cpu_us": 100.1}}},
            {"app CPU per echo task processed, us", "app CPU per task accepted, us"},
        ),
        ({"cold_start_ms": 151.0}, {"cold start (import + index), ms"}),
        (
            {"phases": [_phase("single", 3200, lost=1), _phase("batch", 6000), _phase("traced", 2560)]},
            {"lost tasks"},
        ),
        (
            {"openloop": {"requests": 100, "accepted": 99, "lost": 0, "latency_ms": {"p99": 1.0}}},
            {"requests not accepted"},
        ),
    ],
)
def test_a_figure_past_its_bound_misses_that_target_only(overrides: dict[str, Any], missed: set[str]) -> None:
    verdicts = _verdicts(_report(**overrides))
    assert {name for name, met in verdicts.items() if met is False} == missed
    assert None not in verdicts.values()


def test_a_part_left_out_is_not_measured_rather_than_met_or_missed() -> None:
    # Given a run with only the single-task phase (--skip for every other part)
    report: dict[str, Any] = {"phases": [_phase("single", 3200)], "cold_start_ms": 60.0}
    report["ratios"] = ratios(report)
    verdicts = _verdicts(report)
    # Then what needs the ceiling, tracing, open loop or the direct bench is not measured
    assert verdicts["single-task end to end / ceiling"] is None
    assert verdicts["single-task, tracing on / off"] is None
    assert verdicts["open-loop p99 accept latency, ms"] is None
    assert verdicts["app CPU per echo task processed, us"] is None
    assert verdicts["cold start (import + index), ms"] is True
    assert [verdict_word(m) for m in (None, True, False)] == ["not measured", "met", "NOT MET"]


def test_a_verdict_names_its_bound_and_figure() -> None:
    target = Target("x", 0.8, True, lambda report: report["x"])
    assert target.judge({"x": 0.5}) == {"target": "x", "bound": ">= 0.8", "measured": 0.5, "met": False}
    assert len({t.name for t in TARGETS}) == len(TARGETS)


@pytest.mark.parametrize(
    ("wire", "status", "left"),
    [
        (b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}", 202, b""),
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1", 202, b"HTTP/1.1"),  # next one
        (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n", 503, b""),
        (b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\n\r\n{}", None, None),  # body not all here
        (b"HTTP/1.1 202 Accepted\r\ncontent-len", None, None),  # headers not all here
    ],
)
def test_the_generator_reads_one_whole_response_at_a_time(
    wire: bytes, status: int | None, left: bytes | None
) -> None:
    buffer = bytearray(wire)
    assert parse_response(buffer) == status
    assert bytes(buffer) == (wire if left is None else left)


def test_the_request_is_a_complete_post_with_the_key_and_the_body_length() -> None:
    request = request_bytes("http://127.0.0.1:7181/api/tasks", "k3y", b'{"type":"echo"}')
    head, body = request.split(b"\r\n\r\n")
    assert head.startswith(b"POST /api/tasks HTTP/1.1\r\n")
    assert b"x-functions-key: k3y" in head
    assert b"content-length: 15" in head
    assert body == b'{"type":"echo"}'


def _ceiling(per_second: float) -> Ceiling:
    return Ceiling(20_000, 64, 30, 20_000 / per_second, per_second, 60.0, 120.0)


def test_tasklane_is_compared_with_the_mean_of_the_ceilings_before_and_after_it() -> None:
    found = combine([_ceiling(4000), _ceiling(5000)])
    assert found["per_second"] == 4500
    assert found["spread"] == 0.222  # (5000 - 4000) / 4500: a busy machine shows
    assert [run["per_second"] for run in found["runs"]] == [4000, 5000]
    assert combine([_ceiling(4000), _ceiling(4000)])["spread"] == 0


def test_the_direct_figure_is_the_median_round_so_one_disturbed_round_does_not_move_it() -> None:
    # Given three rounds of 1,000 tasks each, the second disturbed by other work on the machine
    accepting = [Timing(1000, 0.030, 0.1), Timing(1000, 0.090, 0.3), Timing(1000, 0.031, 0.1)]
    processing = [Timing(1000, 0.070, 0.2), Timing(1000, 0.200, 0.4), Timing(1000, 0.072, 0.2)]
    found = summarise(accepting, processing)
    # Then the figures are the median round's, and every round is kept
    assert found["accept_cpu_us"] == 31.0
    assert found["process_cpu_us"] == 72.0
    assert found["process_cpu_us_rounds"] == [70.0, 200.0, 72.0]
    assert found["tasks"] == 3000
    assert found["processed_per_second"] == 3750.0  # 3,000 tasks in 0.8 s


def test_the_ceiling_consumes_with_the_prefetch_of_the_apps_host_json(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"extensions": {"rabbitMQ": {"prefetchCount": 12}}}))
    assert host_prefetch(host_json) == 12
    host_json.write_text(json.dumps({"version": "2.0"}))
    assert host_prefetch(host_json) == DEFAULT_PREFETCH
    assert host_prefetch(tmp_path / "missing.json") == DEFAULT_PREFETCH


def test_the_bench_defaults_are_the_documented_sizes() -> None:
    args = parser().parse_args([])
    assert (args.single, args.concurrency, args.batches, args.batch_size) == (20_000, 64, 200, 100)
    assert args.ceiling is None  # as many messages as single-task POSTs
    assert args.openloop_seconds == 10
    assert args.skip == []


def test_parts_can_be_left_out_but_only_those_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["--skip", "tracing", "--skip", "direct", "--single", "500"])
    assert args.skip == ["tracing", "direct"]
    assert args.single == 500
    with pytest.raises(SystemExit):
        parser().parse_args(["--skip", "single"])
    assert "invalid choice: 'single'" in capsys.readouterr().err


def test_the_phases_meant_without_telemetry_drop_the_shells_otel_settings() -> None:
    # Given a developer's shell that exports to SigNoz
    shell = {
        "PATH": "/usr/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://ingest",
        "TASKLANE_TRACE_CONSOLE": "1",
    }
    # Then the host and the direct bench of the untraced phases see none of it
    assert without_telemetry(shell) == {"PATH": "/usr/bin"}


def test_machine_cpu_counts_this_process_busy_time() -> None:
    # Given the machine's busy CPU so far, When this process spins for 0.3 s of its own CPU
    before, mine = machine_cpu_seconds(), time.process_time()
    while time.process_time() - mine < 0.3:
        pass
    # Then the machine was busy at least that long (other processes only add to it)
    assert machine_cpu_seconds() - before >= 0.25
