"""The bench's targets (issue 14) and the verdict on each: met, not met, or not measured.

Throughput is judged against the machine itself, not a fixed number: tasklane's end-to-end rates over
the raw queue path measured in the same run (:mod:`local.bench.ceiling`), and tracing on over tracing
off. Each figure is read from the report the bench writes, so a saved JSON can be judged again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Report = Mapping[str, Any]


@dataclass(frozen=True)
class Target:
    """A bound on one figure of the report: ``at_least`` the bound, or at most."""

    name: str
    bound: float
    at_least: bool
    read: Callable[[Report], float | None]

    def judge(self, report: Report) -> dict[str, Any]:
        """The figure, the bound and the verdict: ``met`` is None when the figure was not measured."""
        value = self.read(report)
        met = None if value is None else (value >= self.bound if self.at_least else value <= self.bound)
        return {
            "target": self.name,
            "bound": (">= " if self.at_least else "<= ") + f"{self.bound:g}",
            "measured": value,
            "met": met,
        }


def phase(report: Report, name: str) -> Mapping[str, Any] | None:
    """The phase called ``name``, if it ran and processed anything."""
    for found in report.get("phases", []):
        if found["name"] == name and found.get("succeeded"):
            return found  # type: ignore[no-any-return]
    return None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    # Not rounded: 0.79975 must not pass for 0.8.
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _rate(report: Report, name: str) -> float | None:
    found = phase(report, name)
    return None if found is None else float(found["processed_per_second"])


def ratios(report: Report) -> dict[str, float | None]:
    """tasklane's end-to-end rates over the ceiling's, and tracing on over off (None: not measured)."""
    ceiling = report.get("ceiling") or {}
    raw = ceiling.get("per_second")
    return {
        "single_to_ceiling": _ratio(_rate(report, "single"), raw),
        "batch_to_ceiling": _ratio(_rate(report, "batch"), raw),
        "traced_single_to_ceiling": _ratio(_rate(report, "traced"), raw),
        "traced_to_untraced": _ratio(_rate(report, "traced"), _rate(report, "single")),
    }


def _path(*keys: str) -> Callable[[Report], float | None]:
    """A reader of the number at ``keys`` in the report; None where any part is missing."""

    def read(report: Report) -> float | None:
        found: Any = report
        for key in keys:
            if not isinstance(found, Mapping) or found.get(key) is None:
                return None
            found = found[key]
        return float(found)

    return read


def _lost(report: Report) -> float | None:
    """Tasks accepted and never processed, over every phase that accepted any."""
    ran = [p for p in [*report.get("phases", []), report.get("openloop") or {}] if p.get("accepted")]
    return float(sum(p["lost"] for p in ran)) if ran else None


def _refused(report: Report) -> float | None:
    """Requests answered with anything but 202: a broker or Valkey outage spoils a phase's figures."""
    ran = report.get("phases", [])
    loop = report.get("openloop") or {}
    refused = sum(p["non_2xx"] for p in ran) + loop.get("requests", 0) - loop.get("accepted", 0)
    return float(refused) if ran else None


TARGETS: tuple[Target, ...] = (
    Target("single-task end to end / ceiling", 0.8, True, _path("ratios", "single_to_ceiling")),
    Target("batches end to end / ceiling", 1.5, True, _path("ratios", "batch_to_ceiling")),
    Target("single-task, tracing on / off", 0.8, True, _path("ratios", "traced_to_untraced")),
    Target("open-loop p99 accept latency, ms", 15, False, _path("openloop", "latency_ms", "p99")),
    Target("app CPU per echo task processed, us", 100, False, _path("direct", "off", "process_cpu_us")),
    Target("app CPU per task accepted, us", 100, False, _path("direct", "off", "accept_cpu_us")),
    Target("cold start (import + index), ms", 150, False, _path("cold_start_ms")),
    Target("lost tasks", 0, False, _lost),
    Target("requests not accepted", 0, False, _refused),
)


def judge(report: Report, targets: tuple[Target, ...] = TARGETS) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    return [target.judge(report) for target in targets]


def verdict_word(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "NOT MET"
