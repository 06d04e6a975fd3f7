"""The deployment package holds the app and nothing of the tooling, with ``.funcignore`` applied.

Two tools build it, and they read ``.funcignore`` differently, so the package is built both ways:

- azd (``azd deploy``, what ``deploy.yml`` runs) applies git's ignore rules, as ``pathspec``'s
  ``GitIgnoreSpec`` implements them, and always leaves out ``local.settings.json``;
- Core Tools (``func azure functionapp publish``) uses its ``GitIgnoreParser``, a port of the
  ``gitignore-parser`` npm package: each pattern becomes a regular expression anchored at the start
  of the path and matched as a prefix (``*`` is ``[^/]+``, ``**`` is ``.+``, ``?`` is literal), a
  ``!`` pattern re-includes, and ``.git``/``.vscode`` and four file names are always left out
  (``FileSystemHelpers.GetLocalFiles``). Ported below.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
Ignored = Callable[[str, bool], bool]


def funcignore_lines() -> list[str]:
    return (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()


def azd_rules(lines: list[str]) -> Ignored:
    spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(path: str, is_dir: bool) -> bool:
        if path == "local.settings.json" or path.split("/")[0] == ".git":
            return True
        return spec.match_file(path + "/" if is_dir else path)

    return ignored


def core_tools_rules(lines: list[str]) -> Ignored:
    """``GitIgnoreParser.Denies`` and the fixed exclusions of ``GetLocalFiles``, as Core Tools has them."""
    positive: list[str] = []
    negative: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        is_negative = line.startswith("!")
        line = line[1:] if is_negative else line
        line = line[1:] if line.startswith("/") else line
        (negative if is_negative else positive).append(line)

    def regex(patterns: list[str]) -> re.Pattern[str]:
        if not patterns:
            return re.compile(r"$^")
        prepared = [
            re.sub(r"[\-\[\]\/\{\}\(\)\+\?\.\\\^\$\|]", lambda m: "\\" + m.group(0), p)
            .replace("**", "(.+)")
            .replace("*", "([^\\/]+)")
            for p in sorted(patterns)
        ]
        return re.compile("^((" + ")|(".join(prepared) + "))")

    denied_by, accepted_by = regex(positive), regex(negative)
    always_files = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}

    def ignored(path: str, is_dir: bool) -> bool:
        name = path.rsplit("/", 1)[-1]
        if is_dir:
            # Core Tools walks every folder but .git and .vscode and filters files; skipping a folder its
            # patterns deny is the same thing when no '!' pattern could take a file back.
            return name in {".git", ".vscode"} or (not negative and bool(denied_by.match(path)))
        if name in always_files:
            return True
        return not (accepted_by.match(path) or not denied_by.match(path))

    return ignored


def package(ignored: Ignored, destination: Path) -> set[str]:
    """Zip the app folder as the tool would; the names in the zip."""
    with zipfile.ZipFile(destination, "w") as archive:
        for path in _files(ignored):
            archive.write(ROOT / path, path)
    with zipfile.ZipFile(destination) as archive:
        return set(archive.namelist())


def _files(ignored: Ignored) -> Iterator[str]:
    for folder, directories, files in os.walk(ROOT):
        relative = Path(folder).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        directories[:] = [d for d in directories if not ignored(prefix + d, True)]
        for name in files:
            if not ignored(prefix + name, False):
                yield prefix + name


@pytest.fixture(params=["azd", "core-tools"])
def built(request: pytest.FixtureRequest, tmp_path: Path) -> set[str]:
    rules = azd_rules if request.param == "azd" else core_tools_rules
    return package(rules(funcignore_lines()), tmp_path / "app.zip")


def test_the_package_holds_the_app(built: set[str]) -> None:
    for required in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "functions/__init__.py",
        "shared/pipeline/settings.py",
    ):
        assert required in built
    assert any(name.startswith("functions/") for name in built)
    assert any(name.startswith("shared/brokers/") for name in built)


@pytest.mark.parametrize(
    "tooling", ["tests/", "local/", "infra/", ".venv/", ".github/", ".services/", ".git/", "azure.yaml"]
)
def test_the_package_leaves_the_tooling_out(built: set[str], tooling: str) -> None:
    assert [name for name in built if name.startswith(tooling)] == []


def test_no_local_settings_and_no_bytecode_are_deployed(built: set[str]) -> None:
    assert not [name for name in built if name.startswith("local.settings")]
    assert not [name for name in built if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.parametrize("rules", [azd_rules, core_tools_rules], ids=["azd", "core-tools"])
@pytest.mark.parametrize(
    ("lines", "path", "expected"),
    [
        (["tests"], "tests/test_x.py", True),
        (["tests"], "shared/tests.py", False),
        (["*.pyc"], "a.pyc", True),
        (["**/__pycache__"], "shared/__pycache__/config.cpython-311.pyc", True),
        (["local", "!local/keep.py"], "local/keep.py", False),
        ([], "local.settings.json", True),
    ],
)
def test_the_rules_agree_where_both_tools_agree(
    rules: Callable[[list[str]], Ignored], lines: list[str], path: str, expected: bool
) -> None:
    assert rules(lines)(path, False) is expected


def test_core_tools_matches_patterns_as_prefixes() -> None:
    # Its port anchors each pattern at the start only: 'local' also leaves out 'local.settings.emulator.json',
    # and a bare '__pycache__' reaches only the top folder (hence '**/__pycache__' in .funcignore).
    ignored = core_tools_rules(["local", "__pycache__"])
    assert ignored("local.settings.emulator.json", False)
    assert not ignored("shared/__pycache__/config.cpython-311.pyc", False)
    assert not azd_rules(["local"])("local.settings.emulator.json", False)
