"""Real alert receivers for tests: an HTTP server that keeps what is POSTed to it (a Slack
incoming webhook's stand-in: the same request, answered the same way) and an SMTP server
process (aiosmtpd) delivering into a Maildir."""

import json
import mailbox
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, what: str, deadline_s: float = 60.0):
    """Polls `condition` until it returns something truthy (generous deadline: a busy machine)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class WebhookReceiver:
    """`with WebhookReceiver() as hook:` POSTs to `hook.url` land in `hook.posts` (parsed JSON)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")  # what Slack answers

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/alerts"

    def __enter__(self) -> "WebhookReceiver":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def titles(self) -> list[str]:
        return [p["text"] for p in self.posts]


class SmtpServer:
    """`with SmtpServer(folder) as smtp:` an aiosmtpd process on `smtp.port`; `smtp.subjects()`
    lists the subjects of the mails it received."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.port = free_port()

    def __enter__(self) -> "SmtpServer":
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{self.port}",
                "-c",
                "aiosmtpd.handlers.Mailbox",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(self._accepts, f"the SMTP server on port {self.port}")
        return self

    def _accepts(self) -> bool:
        if self._process.poll() is not None:
            raise RuntimeError(f"aiosmtpd exited: {self._process.stderr.read().decode()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a busy event loop that missed SIGTERM
            self._process.kill()
            self._process.wait()

    def messages(self) -> list:
        if not (self.folder / "new").exists():
            return []
        return list(mailbox.Maildir(self.folder).values())

    def subjects(self) -> list[str]:
        # Long subjects come back folded (RFC 5322): unfold them.
        return [
            str(m["Subject"]).replace("\r\n", "").replace("\n", "").strip() for m in self.messages()
        ]
