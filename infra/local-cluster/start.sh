#!/usr/bin/env bash
# Start a local Kubernetes 1.20 control plane on loopback (etcd, kube-apiserver with TLS, token
# auth and RBAC, controller manager, scheduler) and print its KUBECONFIG; Ctrl-C stops it.
# No nodes: the tests' fake kubelet (tests/infra/fake_kubelet.py) plays them.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/local-cluster/build.sh
exec .venv/bin/python -m tests.infra.cluster
