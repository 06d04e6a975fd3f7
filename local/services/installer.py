"""Install what is missing: apt packages and Azurite from npm."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from local.services.service import Report, ServicesError, _shown
from local.services.strategy import (
    APT_PACKAGES,
    AZURITE_PACKAGE,
    BACKPORTS_SOURCE,
    BACKPORTS_SOURCE_TEXT,
    System,
    apt_commands,
)


def install(names: Sequence[str], system: System, state_dir: Path, report: Report) -> None:
    """Install what is missing: apt packages and Azurite from npm, side by side."""
    jobs: list[tuple[str, list[list[str]]]] = []
    apt_names = [name for name in names if name in APT_PACKAGES]
    if apt_names:
        if system.codename == "bookworm" and "valkey" in apt_names and not system.backports:
            BACKPORTS_SOURCE.write_text(BACKPORTS_SOURCE_TEXT, encoding="utf-8")
            report(f"apt: added {BACKPORTS_SOURCE}")
        jobs.append(("apt", apt_commands(apt_names, system.codename)))
    if "azurite" in names:
        jobs.append(("npm", [["npm", "install", "-g", AZURITE_PACKAGE]]))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        running = [pool.submit(_run_job, label, commands, state_dir, report) for label, commands in jobs]
        for job in running:
            job.result()


def _run_job(label: str, commands: list[list[str]], state_dir: Path, report: Report) -> None:
    log = state_dir / f"install-{label}.log"
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    with log.open("wb") as sink:
        for command in commands:
            report(f"{label}: {' '.join(command)} (log {_shown(log)})")
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environ,
                check=False,
            )
            if done.returncode != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                raise ServicesError("\n".join([f"{label}: {' '.join(command)} failed:", *tail]))
    report(f"{label}: done in {time.monotonic() - started:.1f}s")
