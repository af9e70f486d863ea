#!/usr/bin/env bash
# Makes the binaries the tests run available under bin/: kube-apiserver, kubectl and friends and
# the cert-manager controller (built from the Go module proxy, cached per user outside the
# clone), and etcd (Debian's etcd-server). Cheap when everything is already cached.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$HACK_DIR/build-kube-binaries.sh"
"$HACK_DIR/build-cert-manager.sh"

# etcd: Debian's etcd-server 3.4 works with kube-apiserver 1.37 (it turns off the features that
# need a newer etcd).
if ! command -v etcd >/dev/null; then
  log "installing Debian's etcd-server"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y -qq etcd-server >/dev/null 2>&1 ||
    { "${sudo_cmd[@]}" apt-get update -qq >/dev/null && "${sudo_cmd[@]}" apt-get install -y -qq etcd-server >/dev/null; } ||
    die "could not install etcd-server with apt-get"
fi

# bin/k8s is what envtest's KUBEBUILDER_ASSETS points at: one directory with kube-apiserver,
# etcd and kubectl (links into the cache).
KUBE_BIN="$KNIT_CACHE/k8s/$KUBERNETES_VERSION-$GOOS_HOST-$GOARCH_HOST"
CM_DIR=$(cert_manager_dir)
# A link already right is left alone: .ci/run starts make test and make e2e at once, and both
# run this (replacing a link removes it for a moment).
link() { [[ -L $2 && $(readlink "$2") == "$1" ]] || ln -sfn "$1" "$2"; }
mkdir -p "$REPO_ROOT/bin/k8s"
for b in "$KUBE_BIN"/*; do link "$b" "$REPO_ROOT/bin/k8s/$(basename "$b")"; done
link "$(command -v etcd)" "$REPO_ROOT/bin/k8s/etcd"
link "$CM_DIR" "$REPO_ROOT/bin/cert-manager"

log "test binaries:"
log "  $("$REPO_ROOT/bin/k8s/kube-apiserver" --version) (kube-apiserver)"
log "  etcd $("$REPO_ROOT/bin/k8s/etcd" --version | sed -n 's/^etcd Version: //p')"
log "  cert-manager $("$REPO_ROOT/bin/cert-manager/cert-manager-controller" --version 2>&1 | head -1)"
