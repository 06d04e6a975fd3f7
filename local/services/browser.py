"""Chromium for the dashboard's browser test: Debian's package, installed like the servers when missing.

Playwright's own browser download cannot work offline, so the test drives the system's
``/usr/bin/chromium``. On Debian/Ubuntu as root it is installed with apt-get, as Valkey and RabbitMQ
are; otherwise the command that installs it is said. ``python -m local.services.browser`` (run by
``make test``) fails when an install fails, and under CI when there is no browser; elsewhere the
browser test then skips with the same reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from local.services import machine
from local.services.installer import _run_job
from local.services.lifecycle import _locked
from local.services.service import STATE_DIR, Report, ServicesError, say

CHROMIUM = Path("/usr/bin/chromium")
APT_PACKAGE = "chromium"


def ensure_browser(*, state_dir: Path = STATE_DIR, report: Report = say) -> Path | None:
    """The Chromium executable, installed first when missing; None, with the fix said, when this user
    cannot install it."""
    if CHROMIUM.is_file():
        report(f"chromium: found {CHROMIUM}")
        return CHROMIUM
    system = machine.probe_system()
    if not (system.debian_like and system.root):
        fix = f"sudo apt-get install -y {APT_PACKAGE}" if system.debian_like else "install Chromium"
        report(f"chromium: {CHROMIUM} is missing and this user cannot install it; fix it with: {fix}")
        return None
    # The sandbox helper and desktop extras it recommends are of no use to a headless test browser.
    commands = [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", APT_PACKAGE]]
    with _locked(state_dir):
        _run_job("apt-chromium", commands, state_dir, report)
    if not CHROMIUM.is_file():
        raise ServicesError(f"chromium: apt-get installed {APT_PACKAGE}, yet {CHROMIUM} is not there")
    return CHROMIUM


def main() -> int:
    try:
        found = ensure_browser()
    except ServicesError as exc:
        say(f"error: {exc}")
        return 1
    return 1 if found is None and os.environ.get("CI") else 0


if __name__ == "__main__":
    sys.exit(main())
