"""A real browser for UI tests: Debian's Chromium (installed with apt-get when missing), driven by
Playwright with no browser download. `python -m tests.browser` installs it, as CI does."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium floods a closed network with requests.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def ensure_chromium() -> str:
    """The Chromium executable, installed from Debian's archive if missing; raises RuntimeError
    saying why when it cannot be (not root, no apt, the archive unreachable)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install it")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and shutil.which("sudo") is None:
        raise RuntimeError(f"{CHROMIUM} is missing; installing it needs root (no sudo here)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["update", "-qq"], ["install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            [*prefix, apt, *command], capture_output=True, text=True, env=env, timeout=900
        )
        if done.returncode != 0 and command[0] == "install":
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"apt-get install chromium failed: {' / '.join(tail)}")
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is not there")
    return CHROMIUM


if __name__ == "__main__":
    try:
        print(ensure_chromium())
    except RuntimeError as exc:
        sys.exit(str(exc))
