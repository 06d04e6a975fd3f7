"""The package boundaries declared in pyproject.toml ([tool.importlinter]) hold.

The app (``function_app``, ``functions``, ``shared``) never imports the host; the host in
``local/host/`` imports nothing of the app and, of ``shared``, only ``shared.platform``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [contract["name"] for contract in config["tool"]["importlinter"]["contracts"]]


def test_every_declared_import_contract_is_kept() -> None:
    # Given the contracts declared in pyproject.toml
    names = _contract_names()
    assert len(names) >= 4
    # When import-linter checks the code
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    # Then it passes, and reports each contract by name as kept
    report = " ".join(result.stdout.split())  # it wraps long names over lines
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        assert f"{name} KEPT" in report, f"{name!r} is not reported as kept:\n{result.stdout}"
    assert f"Contracts: {len(names)} kept, 0 broken." in report


def test_the_composition_root_never_imports_the_host() -> None:
    # import-linter takes packages only, so function_app.py (a module) is checked here.
    # Given the app's composition root
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    # When its imports are read
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    # Then none of them is the local host or its tooling
    assert imported, "function_app.py imports nothing: the test would pass vacuously"
    assert not [name for name in imported if name == "local" or name.startswith("local.")]
