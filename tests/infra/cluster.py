"""A real Kubernetes 1.20 control plane on loopback, from the binaries `build.sh` caches.

etcd + kube-apiserver (TLS, token auth, RBAC) + kube-controller-manager + kube-scheduler, on
free ports in 6400-6499, with a kubeconfig for an admin token. No kubelet: `fake_kubelet`
plays the nodes. `python -m tests.infra.cluster` starts one by hand (Ctrl-C stops it).
"""

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get(
        "FLIGHTLINE_K8S_CACHE", Path.home() / ".cache" / "flightline" / "kubernetes-1.20.2"
    )
)
BIN = CACHE / "bin"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubectl")
PORT_RANGE = range(6400, 6500)
ADMIN_TOKEN = "flightline-admin-token"  # test cluster only, on loopback, torn down after tests


def binaries_ready() -> bool:
    return all(os.access(BIN / b, os.X_OK) for b in BINARIES)


def build() -> None:
    """Build (or find cached) binaries: about 8 minutes the first time, then instant."""
    subprocess.run(["bash", str(PROJECT_ROOT / "infra" / "local-cluster" / "build.sh")], check=True)


def _free_ports(count: int) -> list[int]:
    ports = []
    for port in PORT_RANGE:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free loopback ports in 6400-6499")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_certs(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/ca.key",
             "-out", f"{d}/ca.crt", "-days", "3", "-subj", "/CN=flightline-test-ca")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/apiserver.key",
             "-out", f"{d}/apiserver.csr", "-subj", "/CN=kube-apiserver")  # fmt: skip
    (d / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\n"
    )
    _openssl("x509", "-req", "-in", f"{d}/apiserver.csr", "-CA", f"{d}/ca.crt",
             "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/apiserver.crt",
             "-days", "3", "-extfile", f"{d}/san.ext")  # fmt: skip
    _openssl("genrsa", "-out", f"{d}/sa.key", "2048")
    _openssl("rsa", "-in", f"{d}/sa.key", "-pubout", "-out", f"{d}/sa.pub")


@dataclass
class Cluster:
    """A started control plane; `stop()` (or the context manager) ends every process."""

    workdir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    startup_seconds: float = 0.0

    def kubectl(self, *args: str, check: bool = True, input: str | None = None):
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=check,
            input=input,
        )

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _kubeconfig(server: str, ca: Path, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {{server: "{server}", certificate-authority: "{ca}"}}
users:
- name: admin
  user: {{token: "{token}"}}
contexts:
- name: local
  context: {{cluster: local, user: admin, namespace: default}}
current-context: local
"""


def start(workdir: Path | None = None, timeout: float = 90) -> Cluster:
    if not binaries_ready():
        raise RuntimeError(f"no control-plane binaries in {BIN}: run infra/local-cluster/build.sh")
    began = time.monotonic()
    d = Path(workdir or tempfile.mkdtemp(prefix="flightline-k8s-"))
    d.mkdir(parents=True, exist_ok=True)
    _make_certs(d)
    etcd_client, etcd_peer, api = _free_ports(3)
    server = f"https://127.0.0.1:{api}"
    (d / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
    kubeconfig = d / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, d / "ca.crt", ADMIN_TOKEN))
    cluster = Cluster(
        workdir=d,
        server=server,
        kubeconfig=kubeconfig,
        ca_file=d / "ca.crt",
        ports={"etcd": etcd_client, "etcd-peer": etcd_peer, "apiserver": api},
    )
    gates = "--feature-gates=TTLAfterFinished=true"  # else 1.20 drops ttlSecondsAfterFinished
    commands = {
        "etcd": [
            "--name=default", f"--data-dir={d}/etcd",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
        ],
        "kube-apiserver": [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api}", "--insecure-port=0",
            f"--tls-cert-file={d}/apiserver.crt", f"--tls-private-key-file={d}/apiserver.key",
            f"--client-ca-file={d}/ca.crt", f"--token-auth-file={d}/tokens.csv",
            "--authorization-mode=RBAC", "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-key-file={d}/sa.pub",
            f"--service-account-signing-key-file={d}/sa.key",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--enable-priority-and-fairness=false", gates,
        ],
        "kube-controller-manager": [
            f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--port=0",
            "--secure-port=0", f"--service-account-private-key-file={d}/sa.key",
            f"--root-ca-file={d}/ca.crt", "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-ttl", "--concurrent-gc-syncs=5", gates,
        ],
        "kube-scheduler": [
            f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--port=0",
            "--secure-port=0",
        ],
    }  # fmt: skip
    try:
        for name, args in commands.items():
            log = open(d / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
            cluster.processes[name] = subprocess.Popen(
                [str(BIN / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=d,
            )
            if name == "kube-apiserver":
                _wait_ready(cluster, timeout)
        _wait_default_service_account(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    cluster.startup_seconds = time.monotonic() - began
    return cluster


def _wait_ready(cluster: Cluster, timeout: float) -> None:
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(
        f"{cluster.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{cluster.log(name)[-3000:]}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"apiserver not ready:\n{cluster.log('kube-apiserver')[-3000:]}")


def _wait_default_service_account(cluster: Cluster, timeout: float) -> None:
    """Pods need their namespace's service account and its token: the controller manager's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "secrets", "-n", "default", "-o", "name", check=False)
        if "default-token" in out.stdout:
            return
        time.sleep(0.3)
    raise TimeoutError(f"no default service account:\n{cluster.log('kube-controller-manager')}")


def main() -> None:
    if not binaries_ready():
        build()
    with start() as cluster:
        print(f"control plane ready in {cluster.startup_seconds:.1f}s at {cluster.server}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    shutil.rmtree(cluster.workdir, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
