"""Route templates match as the Functions host matches them."""

import pytest

from local.host.http.routes import Route, RouteMatch, RouteTable, RouteTemplate, RouteTemplateError


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("api/tasks", "/api/tasks", {}),
        ("api/tasks", "/API/Tasks/", {}),
        ("api/tasks", "/api/tasks/x", None),
        ("api/tasks/{id}", "/api/tasks/42", {"id": "42"}),
        ("api/tasks/{id}", "/api/tasks", None),
        ("api/tasks/{id:int}", "/api/tasks/42", {"id": "42"}),
        ("api/tasks/{id:int}", "/api/tasks/abc", None),
        ("api/tasks/{id:int}", "/api/tasks/99999999999", None),
        ("api/tasks/{id:long}", "/api/tasks/99999999999", {"id": "99999999999"}),
        (
            "api/tasks/{id:guid}",
            "/api/tasks/0f8fad5b-d9cb-469f-a165-70867728950e",
            {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"},
        ),
        ("api/tasks/{id:guid}", "/api/tasks/not-a-guid", None),
        ("api/{flag:bool}", "/api/True", {"flag": "True"}),
        ("api/{name:alpha}", "/api/abc", {"name": "abc"}),
        ("api/{name:alpha}", "/api/abc1", None),
        ("api/{n:min(1)}", "/api/0", None),
        ("api/{n:range(1,10)}", "/api/10", {"n": "10"}),
        ("api/{n:int:max(5)}", "/api/6", None),
        ("api/{s:minlength(3)}", "/api/ab", None),
        ("api/{s:length(2,3)}", "/api/abc", {"s": "abc"}),
        ("api/{s:regex(^[a-z]+-\\d+$)}", "/api/job-12", {"s": "job-12"}),
        ("api/{s:regex(^[a-z]+-\\d+$)}", "/api/job", None),
        ("api/items/{id?}", "/api/items", {}),
        ("api/items/{id?}", "/api/items/7", {"id": "7"}),
        ("api/items/{page=1}", "/api/items", {"page": "1"}),
        ("api/files/{*path}", "/api/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("api/files/{*path}", "/api/files", {}),
        ("api/{d:datetime}", "/api/2026-11-23", {"d": "2026-11-23"}),
        ("api/{x:double}", "/api/1.5", {"x": "1.5"}),
        ("api/{x:double}", "/api/one", None),
    ],
)
def test_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    # Given a template, When a path is matched, Then the route parameters (or no match) come back
    assert RouteTemplate.parse(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    ["api/{*rest}/more", "api/{id}/{id}", "api/{id:nosuch}", "api/x{id}", "api/{n:min(a)}"],
)
def test_bad_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(template)


def _table(*specs: tuple[str, str, str]) -> RouteTable:
    return RouteTable(
        [
            Route(RouteTemplate.parse(text), frozenset(m for m in methods.split(",") if m), target)
            for text, methods, target in specs
        ]
    )


@pytest.mark.parametrize(
    ("path", "method", "target"),
    [
        ("/api/tasks/stats", "GET", "literal"),
        ("/api/tasks/42", "GET", "constrained"),
        ("/api/tasks/abc", "GET", "plain"),
        ("/api/tasks/abc/def", "GET", "catch_all"),
    ],
)
def test_most_specific_route_wins(path: str, method: str, target: str) -> None:
    # Given overlapping templates registered in the worst order
    table = _table(
        ("api/tasks/{*rest}", "GET", "catch_all"),
        ("api/tasks/{name}", "GET", "plain"),
        ("api/tasks/{id:int}", "GET", "constrained"),
        ("api/tasks/stats", "GET", "literal"),
    )
    # When a path is looked up, Then the most specific one serves it
    found = table.find(path, method)
    assert isinstance(found, RouteMatch)
    assert found.route.target == target


def test_wrong_method_is_told_apart_from_unknown_path() -> None:
    table = _table(("api/tasks", "POST", "submit"), ("api/tasks/{id}", "GET", "status"))
    assert table.find("/api/tasks", "GET") == frozenset({"POST"})
    assert table.find("/api/nothing", "GET") is None
    found = table.find("/api/tasks", "post")
    assert isinstance(found, RouteMatch)
    assert found.route.target == "submit"


def test_route_without_methods_takes_every_method() -> None:
    table = _table(("api/any", "", "any"))
    for method in ("GET", "POST", "DELETE", "PATCH"):
        assert isinstance(table.find("/api/any", method), RouteMatch)
