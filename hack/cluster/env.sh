# Settings of the local cluster (make cluster-up / cluster-down / demo / e2e). Source it after
# hack/lib.sh. One node, one machine; nothing it runs may send a packet off the machine
# (see ../../../shared/notes/local-cluster.md, SAFETY).

# All state lives here: PKI, configs, logs, pid files, containerd's and kubelet's root, etcd data.
CLUSTER_DIR=${KNIT_CLUSTER_DIR:-$KNIT_CACHE/cluster}
KUBE_BIN="$KNIT_CACHE/k8s/$KUBERNETES_VERSION-$GOOS_HOST-$GOARCH_HOST"
KUBECONFIG_ADMIN="$CLUSTER_DIR/kubeconfig"

NODE_NAME=knit-node
NODE_IP=10.200.0.1              # on a veth pair we create (the kernel has no dummy links)
NODE_LINK=knit0                  # host end carrying NODE_IP; the pod/service CIDR routes point at it
NODE_PEER=knit0p                 # its peer (also in the host namespace; no address)
CNI_BRIDGE=knit-cni0             # the pods' bridge (CNI bridge plugin), gateway POD_GATEWAY
POD_CIDR=10.244.0.0/16           # kube-controller-manager --cluster-cidr
NODE_POD_CIDR=10.244.0.0/24      # the first /24 it hands out: the only node's podCIDR, the CNI subnet
POD_GATEWAY=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
API_PORT=6443                    # kube-apiserver on NODE_IP only
ETCD_CLIENT_PORT=22379           # etcd on 127.0.0.1 only (not 2379: make run / envtest may use it)
ETCD_PEER_PORT=22380
# Images are never pulled: every image is built and imported (make images); containerd gets a
# proxy on a closed loopback port so that even a mistaken pull makes no DNS lookup and no packet
# leaves, and the registry host resolves to 127.0.0.1 through /etc/hosts while the cluster is up.
REGISTRY_HOST=knit.local
HOSTS_MARK="# knit local cluster"
CONTAINERD_SOCK="$CLUSTER_DIR/containerd/containerd.sock"
# Components in start order; cluster-down stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# kubectl_ refuses to run while the node link is gone (cluster down, maybe by another process):
# the API server's address would then route off this machine.
kubectl_() {
  [[ -e /sys/class/net/$NODE_LINK ]] || { echo "kubectl: the local cluster is down (no link $NODE_LINK): not calling $NODE_IP" >&2; return 1; }
  "$KUBE_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"
}
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# import_by_digest TAR REF: imports an image tarball tagged REF and prints REPO@DIGEST. The
# kubelet finds a digest reference only under an image of exactly that name (a pull makes both
# names; an import only the tag), so the digest name is added as well: OLM names bundle,
# catalog and operator images by digest.
import_by_digest() {
  local tar=$1 ref=$2 digest
  ctr_ images import "$tar" >/dev/null || { echo "ctr import of $tar failed" >&2; return 1; }
  digest=$(ctr_ images ls "name==$ref" | awk 'NR==2 {print $3}')
  [[ $digest == sha256:* ]] || { echo "$ref is not in containerd after import" >&2; return 1; }
  ctr_ images tag --force "$ref" "${ref%:*}@$digest" >/dev/null || { echo "tagging ${ref%:*}@$digest failed" >&2; return 1; }
  echo "${ref%:*}@$digest"
}

# pid_of NAME: the pid recorded for a component, if that process is still the component.
pid_of() {
  local f="$CLUSTER_DIR/run/$1.pid" pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  { tr '\0' ' ' </proc/"$pid"/cmdline; } 2>/dev/null | grep -q -- "$1" || return 1
  echo "$pid"
}
