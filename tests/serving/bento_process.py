"""`bentoml serve` of a built Bento as a subprocess on a free loopback port, for the tests that
need the real server (its process tree, its HTTP stack)."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=5).ok
    except requests.RequestException:  # not listening yet, or still starting up
        return False


@contextmanager
def bento_server(latest: dict, log: Path | None = None, **env: str):
    """Yields (process, url, port) once /readyz answers; its output goes to `log` if given. Its
    own session, so that a test may kill the parent and find the workers it leaves."""
    port = free_port()
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            latest["bento"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        # No FLIGHTLINE_BENTO_MODEL: the model tag must come from the Bento itself.
        env={**{k: v for k, v in os.environ.items() if k != "FLIGHTLINE_BENTO_MODEL"}, **env},
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # imports torch, Feast, MLflow: ~1 min when busy
        while not ready(url):
            if time.monotonic() > deadline:
                pytest.fail("bentoml serve did not come up within 300 s")
            time.sleep(0.5)
        yield proc, url, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        if log:
            output.close()
