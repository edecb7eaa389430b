"""Where steps run on Kubernetes: the GPU placement of training steps, as plain typed settings.

The values land in the `dagster-k8s/config` tag of the training op only: a job-level tag would
also reach the run-worker pod, which would then hold the GPU for the whole run.
"""

import os
from dataclasses import dataclass, field

GPU_RESOURCE = "nvidia.com/gpu"


def _parse_labels(text: str) -> dict[str, str]:
    """`key=value,key2=value2` -> dict; the format of kubectl's --selector."""
    pairs = (item.split("=", 1) for item in text.split(",") if item.strip())
    return {k.strip(): v.strip() for k, v in pairs}


@dataclass(frozen=True)
class GpuPlacement:
    """GPU request, node selector and toleration of a training step.

    The toleration matches the taint GPU node pools carry (`nvidia.com/gpu=present:NoSchedule`
    on GKE, EKS and AKS), so that only pods asking for a GPU land there.
    """

    count: int = 1
    node_selector: dict[str, str] = field(
        default_factory=lambda: {"flightline/accelerator": "nvidia-gpu"}
    )
    taint_key: str = GPU_RESOURCE
    cpu: str = "2"
    memory: str = "8Gi"

    @classmethod
    def from_env(cls) -> "GpuPlacement":
        default = cls()
        selector = os.environ.get("FLIGHTLINE_GPU_NODE_SELECTOR")
        return cls(
            count=int(os.environ.get("FLIGHTLINE_GPU_COUNT", default.count)),
            node_selector=_parse_labels(selector) if selector else default.node_selector,
            taint_key=os.environ.get("FLIGHTLINE_GPU_TAINT_KEY", default.taint_key),
            cpu=os.environ.get("FLIGHTLINE_GPU_STEP_CPU", default.cpu),
            memory=os.environ.get("FLIGHTLINE_GPU_STEP_MEMORY", default.memory),
        )

    def k8s_config(self) -> dict:
        """The value of the `dagster-k8s/config` op tag (dagster-k8s's user-defined config)."""
        # Extended resources cannot be overcommitted: request and limit must be equal.
        amounts = {GPU_RESOURCE: str(self.count), "cpu": self.cpu, "memory": self.memory}
        return {
            "container_config": {"resources": {"requests": amounts, "limits": dict(amounts)}},
            "pod_spec_config": {
                "node_selector": dict(self.node_selector),
                "tolerations": [
                    {"key": self.taint_key, "operator": "Exists", "effect": "NoSchedule"}
                ],
            },
        }
