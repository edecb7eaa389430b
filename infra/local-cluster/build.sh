#!/usr/bin/env bash
# Build a real Kubernetes 1.20.2 control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler) from Debian bookworm's `kubernetes` source package with Debian's Go 1.19,
# plus etcd and kubectl 1.20 from Debian binary packages. No Docker, no system install:
# everything is downloaded with apt into a private apt state and unpacked with dpkg -x.
# Idempotent: skips the work when the binaries are already cached.
#
#   FLIGHTLINE_K8S_CACHE   cache dir (default ~/.cache/flightline/kubernetes-1.20.2)
set -euo pipefail

CACHE="${FLIGHTLINE_K8S_CACHE:-$HOME/.cache/flightline/kubernetes-1.20.2}"
BIN="$CACHE/bin"
NEEDED=(kube-apiserver kube-controller-manager kube-scheduler etcd kubectl)

have_all() {
  for b in "${NEEDED[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
}
if have_all; then
  echo "local-cluster: binaries cached in $BIN"
  exit 0
fi

mkdir -p "$BIN" "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial" "$CACHE/debs" "$CACHE/root"
exec 9>"$CACHE/.build.lock"
flock 9
if have_all; then exit 0; fi  # another build finished while we waited

# Private apt state: deb + deb-src for bookworm without touching /etc/apt.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$CACHE/apt/sources.list" <<SRC
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
deb-src [signed-by=$KEYRING] http://deb.debian.org/debian-security bookworm-security main
SRC
APT=(apt-get -q
  -o Dir::Etc::SourceList="$CACHE/apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$CACHE/apt/lists"
  -o Dir::Cache::Archives="$CACHE/apt/archives"
  -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)
"${APT[@]}" update

cd "$CACHE/debs"
"${APT[@]}" download golang-1.19-go golang-1.19-src etcd-server rsync kubernetes-client \
  libpopt0 libxxhash0 2>&1 | tail -n 3
for deb in ./*.deb; do dpkg -x "$deb" "$CACHE/root"; done
cp "$CACHE/root/usr/bin/etcd" "$BIN/etcd"
cp "$CACHE/root/usr/bin/kubectl" "$BIN/kubectl"

SRC_DIR="$CACHE/src"
if [[ ! -d "$SRC_DIR/kubernetes" ]]; then
  mkdir -p "$SRC_DIR" && cd "$SRC_DIR"
  "${APT[@]}" source --download-only kubernetes
  dpkg-source --no-check -x ./kubernetes_*.dsc kubernetes
fi

GOROOT_DIR="$CACHE/root/usr/lib/go-1.19"
export GOROOT="$GOROOT_DIR"
export PATH="$GOROOT_DIR/bin:$CACHE/root/usr/bin:$PATH"
export LD_LIBRARY_PATH="$CACHE/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GOCACHE="$CACHE/gocache" GOFLAGS=-mod=vendor GO111MODULE=on GOPATH="$CACHE/gopath"
# Debian ships tarball sources without git metadata: pin the version stamp explicitly.
export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
cd "$SRC_DIR/kubernetes"
START=$(date +%s)
nice make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  cp "_output/local/bin/linux/amd64/$b" "$BIN/$b" 2>/dev/null || cp "_output/bin/$b" "$BIN/$b"
done
echo "local-cluster: built in $(( $(date +%s) - START )) s into $BIN"
# Only the binaries are needed from now on: drop the 2+ GB of sources, Go caches and toolchain.
rm -rf "$SRC_DIR" "$CACHE/gocache" "$CACHE/gopath" "$CACHE/root" "$CACHE/apt"
