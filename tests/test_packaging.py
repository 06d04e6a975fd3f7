"""What Azure installs (requirements.txt) is what the project declares (pyproject.toml)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_requirements_match_the_project_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert sorted(_requirements()) == sorted(declared)


def test_the_worker_is_never_a_requirement() -> None:
    # The platform provides azure-functions-worker; installing it breaks the deployment.
    assert not any(r.lower().startswith("azure-functions-worker") for r in _requirements())
