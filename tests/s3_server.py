"""A real S3 API server for the tests: `moto_server` (moto[server], a dev dependency) run as a
process of its own on a free loopback port, behind a TCP relay that the fault tests cut and
restore (the server, and what it stores, stay up meanwhile: "unreachable" is a network fault,
not a lost bucket).

Why moto's server: it installs from PyPI with the project's own lock (MinIO, SeaweedFS and
versitygw ship no package on PyPI, npm or Debian that installs here), speaks the S3 REST API
over HTTP as a separate process (pyarrow, boto3 and DuckDB's httpfs talk to it exactly as to
S3), and starts in about a second. It keeps objects in memory, which is what a test wants.
"""

import contextlib
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ACCESS_KEY = "flightline-test"
SECRET_KEY = "flightline-test-secret"  # the test server's, on loopback only


class Relay:
    """Forwards a loopback port to the server; `cut()` closes it (connections refused, open ones
    reset), `restore()` listens again on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._budget: int | None = None  # bytes still let through towards the server
        self.restore()

    @property
    def up(self) -> bool:
        return self._listener is not None

    def cut_after(self, sent_bytes: int) -> None:
        """Cut once this many more bytes went to the server: a failure in the middle of an
        upload, at a deterministic point."""
        self._budget = sent_bytes

    def restore(self) -> None:
        self._budget = None
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone leaves it listening
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream and self._budget is not None:
                    self._budget -= len(data)
                    if self._budget <= 0:
                        self._budget = None
                        self.cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@dataclass
class S3Server:
    proc: subprocess.Popen
    port: int
    relay: Relay
    bucket: str
    log: Path
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """What clients use: through the relay, so that tests can cut the network."""
        return f"http://127.0.0.1:{self.relay.port}"

    def env(self) -> dict[str, str]:
        """The production profile's object-store variables (the Secret carries the keys)."""
        return {
            "FLIGHTLINE_S3_ENDPOINT": self.endpoint,
            "FLIGHTLINE_S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"flightline-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2")
        return sorted(
            obj["Key"]
            for page in pages.paginate(Bucket=bucket or self.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if not obj["Key"].endswith("/")  # pyarrow's folder markers
        )

    def stop(self) -> None:
        self.relay.cut()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(log: Path, timeout: float = 60) -> S3Server:
    """moto_server on a free port (it binds port 0 and prints the one it got)."""
    handle = open(log, "wb")  # noqa: SIM115 - owned by the process
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", "0"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    port = None
    while time.monotonic() < deadline and port is None:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
        found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text())
        port = int(found.group(1)) if found else None
        time.sleep(0.1)
    if port is None:
        proc.kill()
        raise TimeoutError(f"moto_server did not start: {log.read_text()[-2000:]}")
    server = S3Server(proc, port, Relay(port), "", log)
    server.bucket = server.create_bucket()
    return server
