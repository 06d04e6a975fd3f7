"""SigNoz as code: the alert rules and dashboard parse, and query only metrics the app emits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.brokers.base import Backlog
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.outcome import Outcome
from shared.telemetry import instruments as telemetry_metrics
from shared.telemetry.hooks import MetricsHooks
from tests.hosting import ROOT

SIGNOZ = ROOT / "infra" / "signoz"
RULES = sorted((SIGNOZ / "alerts").glob("*.json"))


def _builder_queries(document: dict[str, Any]) -> list[dict[str, Any]]:
    if "condition" in document:
        return list(document["condition"]["compositeQuery"]["builderQueries"].values())
    return [q for w in document["widgets"] for q in w["query"]["builder"]["queryData"]]


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    """Every metric the app records, with the attribute keys of its points."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = telemetry_metrics.Instruments()
    instruments.create(provider.get_meter("test"))
    envelope = TaskEnvelope("t-1", "add", {}, 0.0)
    hooks = MetricsHooks(provider)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(telemetry_metrics, "instruments", instruments)
        hooks.accepted([envelope])
        hooks.recorded(
            [Outcome(envelope, 1.0, 0.1, cache_hit=True), Outcome(envelope, 1.0, 0.1, cache_hit=False)]
        )
        hooks.backlog(Backlog("tasks", active=1, dead_lettered=0, scheduled=0))
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, set[str]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                keys = found.setdefault(metric.name, set())
                for point in metric.data.data_points:
                    keys.update(point.attributes or {})
    return found


def test_there_are_the_four_alerts_and_a_dashboard() -> None:
    names = {path.stem for path in RULES}
    assert names == {"backlog-high", "error-rate", "processing-p95", "dead-letters-growing"}
    assert (SIGNOZ / "dashboard.json").is_file()


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.stem)
def test_each_rule_is_a_signoz_threshold_rule(path: Path) -> None:
    rule = json.loads(path.read_text(encoding="utf-8"))
    assert rule["alertType"] == "METRIC_BASED_ALERT"
    assert rule["ruleType"] == "threshold_rule"
    condition = rule["condition"]
    assert condition["selectedQueryName"] in condition["compositeQuery"]["builderQueries"]
    assert condition["op"] in {"1", "2", "3", "4"}
    assert condition["matchType"] in {"1", "2", "3", "4", "5"}
    assert isinstance(condition["target"], int | float)
    assert rule["evalWindow"].endswith("m0s")
    assert rule["labels"]["severity"] in {"warning", "critical"}


@pytest.mark.parametrize("path", [*RULES, SIGNOZ / "dashboard.json"], ids=lambda p: p.stem)
def test_queries_name_metrics_and_attributes_the_app_emits(path: Path, emitted: dict[str, set[str]]) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    queries = [q for q in _builder_queries(document) if "aggregateAttribute" in q]
    assert queries
    for query in queries:
        metric = query["aggregateAttribute"]["key"]
        assert metric in emitted, f"{path.name} queries {metric}, which the app never records"
        keys = {item["key"]["key"] for item in query["filters"]["items"]}
        keys |= {group["key"] for group in query["groupBy"]}
        assert keys <= emitted[metric], f"{path.name}: {metric} has no attribute {keys - emitted[metric]}"


def test_the_dashboard_shows_throughput_backlog_latency_errors_and_cache() -> None:
    dashboard = json.loads((SIGNOZ / "dashboard.json").read_text(encoding="utf-8"))
    assert [w["id"] for w in dashboard["widgets"]] == ["throughput", "backlog", "latency", "errors", "cache"]
    assert {item["i"] for item in dashboard["layout"]} == {w["id"] for w in dashboard["widgets"]}
