"""Rolling a task's service Deployment to one exact Bento, through the Kubernetes API.

The service image is the project's own, at a pinned version; the Bento it serves is named by
two variables of its pod template, FLIGHTLINE_BENTO_TAG and FLIGHTLINE_BENTO_URI (the export in
the object store), which `serving/from_store.py` imports at start. Rolling = patching those two
(and an annotation) so the Deployment controller starts a new ReplicaSet; then waiting until
every replica is updated and available. A rollout that fails (a pod that crashes, an image that
cannot be pulled, the progress deadline) is undone by patching the previous values back, and the
error carries Kubernetes' own reason. With maxUnavailable 0 the previous pods serve throughout.

What this needs from RBAC (infra/rbac.yaml): get/patch on the task's Deployment, list on
ReplicaSets and Pods, list on Events. Nothing else.
"""

import time
from dataclasses import dataclass

BENTO_TAG_ENV = "FLIGHTLINE_BENTO_TAG"
BENTO_URI_ENV = "FLIGHTLINE_BENTO_URI"
BENTO_ANNOTATION = "flightline.dev/bento"
MODEL_ANNOTATION = "flightline.dev/model-version"  # the MLflow version the Bento pins
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
FAILING_REASONS = {
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


class RolloutFailed(RuntimeError):
    """The new revision did not become available; the previous one was put back."""


def deployment_name(task: str) -> str:
    """The task's service Deployment (infra/manifests/bento.yaml): flight_delay -> flight-delay-service."""
    return f"{task.replace('_', '-')}-service"


@dataclass(frozen=True)
class Served:
    """What a Deployment serves now."""

    bento: str | None
    uri: str | None
    revision: str | None
    image: str
    model_version: str | None = None


@dataclass(frozen=True)
class Rollout:
    bento: str
    revision: str
    previous: Served
    seconds: float
    unchanged: bool = False


class ServiceDeployment:
    def __init__(
        self,
        namespace: str,
        name: str,
        kubeconfig: str | None = None,
        container: str = "service",
    ):
        from kubernetes import client, config

        api = (
            config.new_client_from_config(kubeconfig)
            if kubeconfig
            else (config.load_incluster_config() or client.ApiClient())
        )
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.name, self.container = namespace, name, container

    @property
    def where(self) -> str:
        return f"deployment/{self.name} in namespace {self.namespace}"

    def _read(self):
        return self.apps.read_namespaced_deployment(self.name, self.namespace)

    def _container(self, deployment):
        for container in deployment.spec.template.spec.containers:
            if container.name == self.container:
                return container
        raise RolloutFailed(f"{self.where} has no container named {self.container!r}")

    def served(self) -> Served:
        deployment = self._read()
        env = {e.name: e.value for e in self._container(deployment).env or []}
        return Served(
            env.get(BENTO_TAG_ENV),
            env.get(BENTO_URI_ENV),
            (deployment.metadata.annotations or {}).get(REVISION_ANNOTATION),
            self._container(deployment).image,
            (deployment.spec.template.metadata.annotations or {}).get(MODEL_ANNOTATION),
        )

    def _replica_sets(self, deployment) -> list:
        """The Deployment's ReplicaSets, newest revision first: its rollout history."""
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        sets = self.apps.list_namespaced_replica_set(self.namespace, label_selector=selector)
        owned = [
            rs
            for rs in sets.items
            if any(o.uid == deployment.metadata.uid for o in rs.metadata.owner_references or [])
        ]
        return sorted(
            owned,
            key=lambda rs: int((rs.metadata.annotations or {}).get(REVISION_ANNOTATION, 0)),
            reverse=True,
        )

    def roll_back_to_model(self, model_version: str, timeout_s: float = 600) -> Rollout:
        """Serve again the Bento of an earlier revision that pinned this MLflow version (what a
        champion rollback needs): found in the Deployment's ReplicaSet history."""
        for rs in self._replica_sets(self._read()):
            template = rs.spec.template
            if (template.metadata.annotations or {}).get(MODEL_ANNOTATION) != model_version:
                continue
            env = {
                e.name: e.value
                for c in template.spec.containers
                if c.name == self.container
                for e in c.env or []
            }
            if env.get(BENTO_TAG_ENV) and env.get(BENTO_URI_ENV):
                return self.roll(env[BENTO_TAG_ENV], env[BENTO_URI_ENV], model_version, timeout_s)
        raise RolloutFailed(
            f"{self.where}: no earlier revision served model version {model_version}; "
            "materialize the task's bento and deployment assets instead"
        )

    def _patch(self, bento: str, uri: str, model_version: str | None) -> None:
        annotations = {BENTO_ANNOTATION: bento, MODEL_ANNOTATION: model_version or ""}
        body = {
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {
                        "containers": [
                            {
                                "name": self.container,
                                "env": [
                                    {"name": BENTO_TAG_ENV, "value": bento},
                                    {"name": BENTO_URI_ENV, "value": uri},
                                ],
                            }
                        ]
                    },
                }
            }
        }
        self.apps.patch_namespaced_deployment(self.name, self.namespace, body)

    def roll(
        self, bento: str, uri: str, model_version: str | None = None, timeout_s: float = 600
    ) -> Rollout:
        """Serve exactly this Bento; raise RolloutFailed (after putting the previous Bento back)
        with Kubernetes' reason if the new revision does not become available."""
        from kubernetes.client import ApiException

        started = time.monotonic()
        try:
            previous = self.served()
        except ApiException as exc:
            raise RolloutFailed(f"{self.where}: {exc.status} {exc.reason}: {_body(exc)}") from exc
        if previous.bento == bento and previous.uri == uri:
            self.wait(timeout_s)
            return Rollout(bento, self.served().revision or "?", previous, 0.0, unchanged=True)
        self._patch(bento, uri, model_version)
        try:
            revision = self.wait(timeout_s)
        except RolloutFailed as failure:
            if previous.bento and previous.uri:
                self._patch(previous.bento, previous.uri, previous.model_version)
            raise RolloutFailed(
                f"{self.where}: rollout to {bento} failed: {failure}; "
                f"put back {previous.bento or 'nothing (no Bento served before)'}"
            ) from failure
        return Rollout(bento, revision, previous, time.monotonic() - started)

    def wait(self, timeout_s: float) -> str:
        """Until every replica runs the current template and is available; the revision."""
        deadline = time.monotonic() + timeout_s
        while True:
            d = self._read()
            status, wanted = d.status, d.spec.replicas if d.spec.replicas is not None else 1
            revision = (d.metadata.annotations or {}).get(REVISION_ANNOTATION, "?")
            progressing = next(
                (c for c in status.conditions or [] if c.type == "Progressing"), None
            )
            if progressing is not None and progressing.reason == "ProgressDeadlineExceeded":
                raise RolloutFailed(f"{progressing.reason}: {progressing.message}")
            # Until the controller has seen the new template, the revision annotation (and so
            # "the new ReplicaSet") is still the previous one: judge nothing before that.
            observed = (status.observed_generation or 0) >= d.metadata.generation
            if (
                observed
                and (status.updated_replicas or 0) == wanted
                and (status.replicas or 0) == wanted
                and (status.available_replicas or 0) == wanted
            ):
                return revision
            reason = self._failing_pod(d, revision) if observed else None
            if reason:
                raise RolloutFailed(reason)
            if time.monotonic() > deadline:
                raise RolloutFailed(
                    f"not available after {timeout_s:.0f}s: {status.updated_replicas or 0}/"
                    f"{wanted} updated, {status.available_replicas or 0} available"
                )
            time.sleep(1)

    def _failing_pod(self, deployment, revision: str) -> str | None:
        """A pod of the new ReplicaSet that Kubernetes reports as failing, with its reason."""
        new = [
            rs
            for rs in self._replica_sets(deployment)
            if (rs.metadata.annotations or {}).get(REVISION_ANNOTATION) == revision
        ]
        if not new:
            return None
        selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
        pod_hash = new[0].metadata.labels.get("pod-template-hash")
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{selector},pod-template-hash={pod_hash}"
        )
        for pod in pods.items:
            for status in pod.status.container_statuses or []:
                waiting = status.state.waiting if status.state else None
                if waiting is not None and waiting.reason in FAILING_REASONS:
                    return f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message}"
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return f"pod {pod.metadata.name}: Unschedulable: {condition.message}"
        return None


def _body(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message", exc.body)
    except (TypeError, ValueError):
        return str(exc.body)
