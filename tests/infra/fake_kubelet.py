"""Plays the kubelet of two nodes against a real API server: a GPU node and a CPU node.

It registers the nodes (the GPU one with `nvidia.com/gpu: 1` capacity, a NoSchedule taint and
an accelerator label), keeps them Ready, and runs every pod the real scheduler binds to them as
a local subprocess: the container's command + args (with Kubernetes' `$(VAR)` expansion), its
env (values, fieldRefs, ConfigMap and Secret refs), with the project's venv first on PATH (the
image). It writes the pod's phase and container state back, as a kubelet would: Running, then
Succeeded or Failed with the exit code; an image it does not "have" stays Waiting in
ErrImagePull. Deleted pods are killed and released.

Pods share nothing but the network services, as on a cluster: each runs in an empty directory of
its own (`<pods_root>/<pod>/`) with its own HOME, TMPDIR, FLIGHTLINE_DATA_ROOT and BENTOML_HOME
under it, never the test's data root; the image's code (the project) is importable, its data is
not. A step that relies on a file another pod wrote fails.

Pods share the host's network here, so each declared containerPort is moved to a free loopback
port: env values equal to the port number (what `$(PORT)`-style args read) are rewritten and the
readiness probe is sent there. A pod with a readinessProbe is Ready only once the probe answers
2xx. A Deployment's container (restartPolicy Always) that exits shows CrashLoopBackOff with the
exit code, as a kubelet's back-off does; it is not restarted.
"""

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client, config

GPU_LABEL = {"flightline/accelerator": "nvidia-gpu"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    capacity: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)


GPU_NODE = NodeSpec(
    "gpu-node", {"cpu": "8", "memory": "32Gi", "pods": "20", "nvidia.com/gpu": "1"},
    GPU_LABEL, [GPU_TAINT],
)  # fmt: skip
CPU_NODE = NodeSpec("cpu-node", {"cpu": "8", "memory": "32Gi", "pods": "20"})


def _real_uv() -> str | None:
    """The uv binary itself: pyenv's `uv` shim needs pyenv's environment, which pods lack."""
    probe = subprocess.run(
        ["python3", "-c", "import uv; print(uv.find_uv_bin())"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() or shutil.which("uv")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubelet:
    def __init__(
        self,
        kubeconfig: Path,
        pods_root: Path,
        images: set[str],
        nodes: tuple[NodeSpec, ...] = (GPU_NODE, CPU_NODE),
        base_env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        code_root: Path | None = None,
    ):
        self.api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        self.pods_root = Path(pods_root)
        self.pods_root.mkdir(parents=True, exist_ok=True)
        self.images = images
        self.nodes = {n.name: n for n in nodes}
        venv_bin = str(Path(sys.executable).parent)
        # The image's PATH: its venv, then uv (the image ships it: `bentoml build` locks with uv).
        image_bin = log_dir or self.pods_root
        uv = _real_uv()
        if uv:
            (Path(image_bin) / "bin").mkdir(exist_ok=True)
            link = Path(image_bin) / "bin" / "uv"
            if not link.exists():
                link.symlink_to(uv)
        self.base_env = base_env or {
            "PATH": f"{venv_bin}:{image_bin}/bin:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        if code_root is not None:  # the image's code, importable from any working directory
            self.base_env["PYTHONPATH"] = str(code_root)
        self.log_dir = Path(log_dir or self.pods_root)
        self.procs: dict[str, subprocess.Popen] = {}  # pod uid -> process
        self.handled: set[str] = set()
        self.started_pods: list[dict] = []  # what ran where, for tests
        self.ports: dict[str, dict[int, int]] = {}  # pod name -> containerPort -> host port
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- nodes -------------------------------------------------------------------------------
    def register_nodes(self) -> None:
        for spec in self.nodes.values():
            body = client.V1Node(
                metadata=client.V1ObjectMeta(
                    name=spec.name,
                    labels={"kubernetes.io/hostname": spec.name, **spec.labels},
                ),
                spec=client.V1NodeSpec(taints=[client.V1Taint(**t) for t in spec.taints]),
            )
            self.api.create_node(body)
        self._heartbeat()

    def _heartbeat(self) -> None:
        for spec in self.nodes.values():
            status = {
                "capacity": spec.capacity,
                "allocatable": spec.capacity,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "fake kubelet is posting ready status",
                     "lastHeartbeatTime": _now(), "lastTransitionTime": _now()},
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.20.2", "architecture": "amd64",
                             "operatingSystem": "linux", "machineID": "", "systemUUID": "",
                             "bootID": "", "kernelVersion": "", "osImage": "",
                             "containerRuntimeVersion": "fake://1", "kubeProxyVersion": ""},
            }  # fmt: skip
            self.api.patch_node_status(spec.name, {"status": status})

    # -- pods --------------------------------------------------------------------------------
    def _pod_dir(self, pod) -> Path:
        return self.pods_root / f"{pod.metadata.namespace}-{pod.metadata.name}"

    def _env(self, pod, container) -> dict[str, str]:
        ns = pod.metadata.namespace
        env = dict(self.base_env)
        env["HOSTNAME"] = pod.metadata.name
        # The container's own filesystem: nothing of it is seen by another pod.
        own = self._pod_dir(pod)
        for name in ("home", "tmp", "data"):
            (own / name).mkdir(parents=True, exist_ok=True)
        env.update(
            HOME=str(own / "home"),
            TMPDIR=str(own / "tmp"),
            FLIGHTLINE_DATA_ROOT=str(own / "data"),
            BENTOML_HOME=str(own / "home" / "bentoml"),
        )
        for source in container.env_from or []:
            if source.config_map_ref:
                cm = self.api.read_namespaced_config_map(source.config_map_ref.name, ns)
                env.update(cm.data or {})
            if source.secret_ref:
                secret = self.api.read_namespaced_secret(source.secret_ref.name, ns)
                env.update(
                    {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
                )
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = var.value or ""
            elif var.value_from.field_ref:
                path = var.value_from.field_ref.field_path
                env[var.name] = {
                    "metadata.name": pod.metadata.name,
                    "metadata.namespace": ns,
                    "metadata.uid": pod.metadata.uid,
                    "spec.nodeName": pod.spec.node_name,
                    "status.podIP": "127.0.0.1",
                }.get(path, "")
            elif var.value_from.secret_key_ref:
                ref = var.value_from.secret_key_ref
                data = self.api.read_namespaced_secret(ref.name, ns).data or {}
                env[var.name] = base64.b64decode(data.get(ref.key, "")).decode()
            elif var.value_from.config_map_key_ref:
                ref = var.value_from.config_map_key_ref
                data = self.api.read_namespaced_config_map(ref.name, ns).data or {}
                env[var.name] = data.get(ref.key, "")
        ports = self.ports.get(pod.metadata.name, {})
        for name, value in env.items():
            if value.isdigit() and int(value) in ports:
                env[name] = str(ports[int(value)])
        return env

    @staticmethod
    def _expand(value: str, env: dict[str, str]) -> str:
        """Kubernetes' $(VAR) expansion in command and args ($$ escapes)."""
        return re.sub(
            r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
            value,
        )

    def _allocate_ports(self, pod, container) -> None:
        mapping = {}
        for port in container.ports or []:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                mapping[port.container_port] = sock.getsockname()[1]
        self.ports[pod.metadata.name] = mapping

    def host_port(self, pod_name: str, container_port: int) -> int:
        return self.ports[pod_name][container_port]

    def _set_status(
        self, pod, phase: str, state: dict, ready: bool = False, restarts: int = 0, last=None
    ) -> None:
        container = pod.spec.containers[0]
        status = {"name": container.name, "image": container.image, "imageID": "",
                  "ready": ready, "restartCount": restarts, "state": state}  # fmt: skip
        if last:
            status["lastState"] = last
        body = {
            "status": {
                "phase": phase,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": _now(),
                "conditions": [
                    {"type": "Ready", "status": str(ready), "lastTransitionTime": _now()},
                    {"type": "ContainersReady", "status": str(ready),
                     "lastTransitionTime": _now()},
                ],
                "containerStatuses": [status],
            }
        }  # fmt: skip
        self.api.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)

    def _start(self, pod) -> None:
        container = pod.spec.containers[0]
        if container.image not in self.images:
            message = (
                f'Failed to pull image "{container.image}": rpc error: code = NotFound '
                f"desc = failed to pull and unpack image: not found"
            )
            state = {"waiting": {"reason": "ErrImagePull", "message": message}}
            self._set_status(pod, "Pending", state)
            return
        self._allocate_ports(pod, container)
        env = self._env(pod, container)
        argv = [self._expand(a, env) for a in [*(container.command or []), *(container.args or [])]]
        workdir = self._pod_dir(pod) / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{pod.metadata.name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[pod.metadata.uid] = proc
        self.started_pods.append(
            {
                "name": pod.metadata.name,
                "node": pod.spec.node_name,
                "labels": pod.metadata.labels,
                "workdir": str(workdir),
                "home": env["HOME"],
            }
        )
        probe = container.readiness_probe
        running = {"running": {"startedAt": _now()}}
        self._set_status(pod, "Running", running, ready=probe is None)
        if probe is not None and probe.http_get is not None:
            threading.Thread(target=self._probe_ready, args=(pod, proc, probe), daemon=True).start()
        threading.Thread(target=self._reap, args=(pod, proc), daemon=True).start()

    def _probe_ready(self, pod, proc: subprocess.Popen, probe) -> None:
        """The readiness probe's httpGet, on the pod's host port, until it answers 2xx."""
        container = pod.spec.containers[0]
        port = probe.http_get.port
        if isinstance(port, str):  # a named port
            port = next(p.container_port for p in container.ports if p.name == port)
        url = f"http://127.0.0.1:{self.host_port(pod.metadata.name, port)}{probe.http_get.path}"
        while proc.poll() is None and not self._stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if 200 <= reply.status < 300:
                        with contextlib.suppress(client.ApiException):
                            running = {"running": {"startedAt": _now()}}
                            self._set_status(pod, "Running", running, ready=True)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)

    def _reap(self, pod, proc: subprocess.Popen) -> None:
        code = proc.wait()
        if self._stop.is_set():
            return
        terminated = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": _now(),
                "finishedAt": _now(),
            }
        }
        with contextlib.suppress(client.ApiException):  # deleted meanwhile
            if pod.spec.restart_policy == "Always":
                # A Deployment's pod: a kubelet restarts it with back-off; report the back-off.
                message = (
                    f"back-off restarting failed container {pod.spec.containers[0].name} "
                    f"(exit code {code}): {self._log_tail(pod)}"
                )
                waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
                self._set_status(pod, "Running", waiting, restarts=1, last=terminated)
            else:
                self._set_status(pod, "Succeeded" if code == 0 else "Failed", terminated)

    def _log_tail(self, pod, lines: int = 3) -> str:
        path = self.log_dir / f"{pod.metadata.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def _sync_pods(self) -> None:
        pods = self.api.list_pod_for_all_namespaces().items
        for pod in pods:
            if pod.spec.node_name not in self.nodes:
                continue
            uid = pod.metadata.uid
            if pod.metadata.deletion_timestamp is not None:
                proc = self.procs.pop(uid, None)
                if proc and proc.poll() is None:
                    _signal_group(proc, signal.SIGTERM)  # a server's workers too
                with contextlib.suppress(client.ApiException):
                    self.api.delete_namespaced_pod(
                        pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                    )
                continue
            if uid not in self.handled:
                self.handled.add(uid)
                self._start(pod)

    # -- loop --------------------------------------------------------------------------------
    def _loop(self, interval: float, every: float, fn) -> None:
        last = 0.0
        while not self._stop.wait(interval):
            if time.monotonic() - last < every:
                continue
            last = time.monotonic()
            try:
                fn()
            except Exception as exc:  # keep playing the node through API hiccups
                print(f"fake kubelet: {fn.__name__}: {exc}", file=sys.stderr)

    def start(self) -> "FakeKubelet":
        self.register_nodes()
        for fn, every in ((self._sync_pods, 0.3), (self._heartbeat, 10.0)):
            thread = threading.Thread(target=self._loop, args=(0.3, every, fn), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Each pod's process leads a session of its own: signal all of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
