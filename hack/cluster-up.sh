#!/usr/bin/env bash
# make cluster-up: a real single-node Kubernetes on this machine, no Docker, no registry.
#   hack/cluster-up.sh           network, PKI, containerd, etcd, control plane, kubelet, kube-proxy,
#                                CoreDNS, Gateway API's standard CRDs (GATEWAY_API_VERSION); waits
#                                until the node is Ready and DNS answers.
#   hack/cluster-up.sh network   only the node network and its safety checks (the e2e suite
#                                asserts the routes before any component starts).
# Everything lives under $CLUSTER_DIR (hack/cluster/env.sh); `make cluster-down` undoes it all.
# Running it while the cluster is up is a no-op (it just waits for Ready again); a cluster that
# is only partly up is taken down first and started again.
#
# SAFETY (../shared/notes/local-cluster.md): no packet may leave this machine. The node IP sits
# on a veth pair we create; the pod and service CIDRs are routed to it (a local black hole that
# still lets iptables DNAT work) and this is checked with `ip route get` BEFORE any component
# starts; forwarded packets may only leave through the pods' bridge; every server listens on the
# node IP or 127.0.0.1; images are never pulled (see env.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
[[ $(id -u) == 0 ]] || die "cluster-up needs root (network links, mounts, containerd)"
MODE=${1:-all}
T0=$SECONDS

install_packages() {
  local want=(containerd runc iptables conntrack socat ethtool containernetworking-plugins etcd-server openssl curl)
  local missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} == 0 ]] && return
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
}

any_running() { local c; for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && return 0; done; return 1; }
all_running() { local c; for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null || return 1; done; return 0; }

# --- network -----------------------------------------------------------------------------------
route_is_local() { # route_is_local IP: the kernel routes IP to one of our links (never off the machine)
  local out; out=$(ip -o route get "$1" 2>/dev/null) || return 1
  [[ $out =~ \ dev\ ($NODE_LINK|$CNI_BRIDGE)\  ]]
}

check_routes() {
  local ip
  for ip in "${NODE_POD_CIDR%.*}.77" "${SERVICE_CIDR%.*}.77" "$API_SERVICE_IP" "$DNS_SERVICE_IP" 10.244.200.9 10.96.255.254; do
    route_is_local "$ip" || die "SAFETY: $ip does not route to $NODE_LINK: $(ip -o route get "$ip" 2>&1)"
  done
  log "routes local: $POD_CIDR and $SERVICE_CIDR -> dev $NODE_LINK"
}

setup_network() {
  mkdir -p "$CLUSTER_DIR/run"
  # Sysctls we (and kubelet, kube-proxy) change: remember the originals once, cluster-down restores them.
  if [[ ! -f "$CLUSTER_DIR/run/sysctl.orig" ]]; then
    local s
    for s in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables \
      vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
      [[ -e /proc/sys/${s//.//} ]] && echo "$s=$(sysctl -n "$s")"
    done >"$CLUSTER_DIR/run/sysctl.orig.tmp"
    mv "$CLUSTER_DIR/run/sysctl.orig.tmp" "$CLUSTER_DIR/run/sysctl.orig"
    mkdir -p /run/netns; ls /run/netns >"$CLUSTER_DIR/run/netns.before"
    # Make /run/netns a shared mount point first, as `ip netns add` does: otherwise a later
    # `ip netns add` (proxy/capture's tests do one) bind-mounts it over our pods' namespaces.
    if ! mountpoint -q /run/netns; then
      mount --bind /run/netns /run/netns && mount --make-shared /run/netns && touch "$CLUSTER_DIR/run/netns-bind-ours"
    fi
  fi
  if ! ip link show "$NODE_LINK" >/dev/null 2>&1; then
    ip link add "$NODE_LINK" type veth peer name "$NODE_PEER"
  fi
  ip link set "$NODE_LINK" up
  ip link set "$NODE_PEER" up
  ip addr replace "$NODE_IP/32" dev "$NODE_LINK"
  ip route replace "$POD_CIDR" dev "$NODE_LINK"
  ip route replace "$SERVICE_CIDR" dev "$NODE_LINK"
  check_routes

  # Forwarding guard, before forwarding is switched on: a forwarded packet may leave only through
  # the pods' bridge. In the mangle table, which kube-proxy and kubelet do not rewrite.
  iptables -t mangle -N KNIT-GUARD 2>/dev/null || iptables -t mangle -F KNIT-GUARD
  iptables -t mangle -A KNIT-GUARD -o "$CNI_BRIDGE" -j RETURN
  iptables -t mangle -A KNIT-GUARD -m comment --comment "knit: nothing is forwarded off the machine" -j DROP
  iptables -t mangle -C FORWARD -j KNIT-GUARD 2>/dev/null || iptables -t mangle -I FORWARD 1 -j KNIT-GUARD
  ip6tables -t mangle -N KNIT-GUARD 2>/dev/null || ip6tables -t mangle -F KNIT-GUARD
  ip6tables -t mangle -A KNIT-GUARD -j DROP
  ip6tables -t mangle -C FORWARD -j KNIT-GUARD 2>/dev/null || ip6tables -t mangle -I FORWARD 1 -j KNIT-GUARD
  sysctl -qw net.ipv4.ip_forward=1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 || die "bridge netfilter unavailable (pod -> Service -> pod on one bridge needs it)"

  # The image registry host resolves to loopback while the cluster is up.
  grep -q "$HOSTS_MARK" /etc/hosts || printf '127.0.0.1 %s %s\n' "$REGISTRY_HOST" "$HOSTS_MARK" >>/etc/hosts
}

# --- PKI ---------------------------------------------------------------------------------------
PKI="$CLUSTER_DIR/pki"
cert() { # cert NAME CN O SANS(comma list or "") [server|client|both]
  local name=$1 cn=$2 o=$3 sans=$4 usage=${5:-client}
  [[ -f "$PKI/$name.crt" ]] && return
  local ext="$PKI/$name.ext" eku
  case $usage in server) eku=serverAuth ;; client) eku=clientAuth ;; both) eku="serverAuth,clientAuth" ;; esac
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  local subj="/CN=$cn"; [[ -n $o ]] && subj="/O=$o$subj"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

setup_pki() {
  mkdir -p "$PKI"; chmod 700 "$PKI"
  if [[ ! -f "$PKI/ca.crt" ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=knit-local-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  local dns="kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.$CLUSTER_DOMAIN,localhost"
  local sans="IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1" d
  for d in ${dns//,/ }; do sans+=",DNS:$d"; done
  cert apiserver kube-apiserver "" "$sans" server
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" client
  cert admin kubernetes-admin system:masters "" client
  cert controller-manager system:kube-controller-manager "" "" client
  cert scheduler system:kube-scheduler "" "" client
  cert kubelet "system:node:$NODE_NAME" system:nodes "" client
  cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME" server
  cert kube-proxy system:kube-proxy "" "" client
  if [[ ! -f "$PKI/sa.key" ]]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
    openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
}

kubeconfig() { # kubeconfig FILE CERTNAME
  local b64; b64() { base64 -w0 <"$1"; }
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: knit-local
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$2.crt")
    client-key-data: $(b64 "$PKI/$2.key")
contexts:
- name: knit-local
  context: {cluster: knit-local, user: $2}
current-context: knit-local
KC
  chmod 600 "$1"
}

# --- configuration files -------------------------------------------------------------------------
write_configs() {
  local C="$CLUSTER_DIR"
  mkdir -p "$C/conf" "$C/logs" "$C/run" "$C/containerd" "$C/cni/net.d" "$C/cni/ipam" "$C/kubelet" "$C/pod-logs" "$C/etcd"
  kubeconfig "$KUBECONFIG_ADMIN" admin
  kubeconfig "$C/conf/controller-manager.kubeconfig" controller-manager
  kubeconfig "$C/conf/scheduler.kubeconfig" scheduler
  kubeconfig "$C/conf/kubelet.kubeconfig" kubelet
  kubeconfig "$C/conf/kube-proxy.kubeconfig" kube-proxy

  cat >"$C/conf/containerd.toml" <<TOML
version = 2
root = "$C/containerd/root"
state = "$C/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni/net.d"
    max_conf_num = 1
TOML

  cat >"$C/cni/net.d/10-knit.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "knit",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$CNI_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$C/cni/ipam"
      }
    }
  ]
}
JSON

  # Pods with dnsPolicy Default (CoreDNS itself) must not see the machine's resolver (it is off
  # the machine): they get one that points nowhere.
  echo "nameserver 127.0.0.1" >"$C/conf/resolv.conf"

  cat >"$C/conf/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: $C/conf/resolv.conf
podLogsDir: $C/pod-logs
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
rotateCertificates: false
serverTLSBootstrap: false
YAML

  cat >"$C/conf/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $C/conf/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
mode: iptables
oomScoreAdj: 0
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
YAML
}

# --- processes ---------------------------------------------------------------------------------
start() { # start NAME CMD...: background process, own session, pid file, log
  local name=$1 pid; shift
  if pid=$(pid_of "$name"); then log "$name already running (pid $pid)"; return; fi
  echo "=== $(date -Is) start: $*" >>"$CLUSTER_DIR/logs/$name.log"
  (close_inherited_fds; exec setsid "$@") </dev/null >>"$CLUSTER_DIR/logs/$name.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/run/$name.pid"
}

# close_inherited_fds: closes every open file but stdin, stdout and stderr. A component must not
# keep its starter's files open: one that inherits the lock file of `flock /tmp/knit-cluster.lock
# make e2e` holds that lock for as long as the cluster runs, and then nobody, not even
# `flock … make cluster-down`, gets it.
close_inherited_fds() {
  local fd n
  for fd in /proc/self/fd/*; do
    n=${fd##*/}
    if (( n > 2 )); then eval "exec $n>&-"; fi
  done
}

wait_for() { # wait_for WHAT TIMEOUT CMD...
  local what=$1 timeout=$2 t=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - t < timeout )) || die "$what not ready after ${timeout}s (logs: $CLUSTER_DIR/logs/)"
    sleep 0.5
  done
  log "$what ready ($((SECONDS - t))s)"
}

alive() { pid_of "$1" >/dev/null || die "$1 exited (log: $CLUSTER_DIR/logs/$1.log): $(tail -5 "$CLUSTER_DIR/logs/$1.log")"; }
node_ready() {
  [[ $(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

start_components() {
  local C="$CLUSTER_DIR" K="$KUBE_BIN"
  start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy= \
    containerd --config "$C/conf/containerd.toml"
  wait_for containerd 60 ctr_ version
  alive containerd
  # The sandbox (pause) image and CoreDNS must be in containerd before the kubelet needs them.
  "$HACK_DIR/images.sh" --import pause coredns

  start etcd etcd --name knit --data-dir "$C/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "knit=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" --quota-backend-bytes 2147483648
  wait_for etcd 60 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

  start kube-apiserver "$K/kube-apiserver" --advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port "$API_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --enable-aggregator-routing=true --profiling=false --event-ttl 1h
  wait_for kube-apiserver 120 kubectl_ get --raw /readyz
  alive kube-apiserver

  start kube-controller-manager "$K/kube-controller-manager" --kubeconfig "$C/conf/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$C/conf/controller-manager.kubeconfig" --authorization-kubeconfig "$C/conf/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
    --profiling=false
  start kube-scheduler "$K/kube-scheduler" --kubeconfig "$C/conf/scheduler.kubeconfig" \
    --authentication-kubeconfig "$C/conf/scheduler.kubeconfig" --authorization-kubeconfig "$C/conf/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
  start kubelet "$K/kubelet" --config "$C/conf/kubelet.yaml" --kubeconfig "$C/conf/kubelet.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$C/kubelet" --cert-dir "$C/kubelet/pki"
  start kube-proxy "$K/kube-proxy" --config "$C/conf/kube-proxy.yaml"
  wait_for "node $NODE_NAME" 180 node_ready
  local c; for c in "${COMPONENTS[@]}"; do alive "$c"; done
}

deploy_dns() {
  "$HACK_DIR/cluster/apply.sh" "$REPO_ROOT/config/coredns"
  wait_for "CoreDNS" 180 kubectl_ -n kube-system rollout status deployment/coredns --timeout=2s
}

# Gateway API's standard-channel CRDs at GATEWAY_API_VERSION, from the sigs.k8s.io/gateway-api
# module (Go module proxy/cache): the mesh routes by HTTPRoute and GRPCRoute, and the conformance
# suite refuses to run unless every installed Gateway API CRD carries its own bundle version.
gateway_api_crds_established() {
  local crds; crds=$(kubectl_ get crd -o name | grep '\.gateway\.networking\.k8s\.io$') || return 1
  # shellcheck disable=SC2086
  kubectl_ wait --for condition=Established --timeout=2s $crds
}
install_gateway_api_crds() {
  local dir
  dir=$(cd / && GOFLAGS= go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -nE 's/^\s*"Dir": "(.*)",$/\1/p') ||
    die "go mod download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION failed"
  [[ -d $dir/config/crd/standard ]] || die "no config/crd/standard in sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION ($dir)"
  kubectl_ apply --server-side --force-conflicts -f "$dir/config/crd/standard/" >/dev/null ||
    die "applying Gateway API $GATEWAY_API_VERSION CRDs failed"
  wait_for "Gateway API $GATEWAY_API_VERSION CRDs (standard channel)" 180 gateway_api_crds_established
}

main() {
  install_packages
  "$HACK_DIR/build-kube-binaries.sh"
  eval "$("$HACK_DIR/images.sh" --refs)"   # PAUSE_IMAGE, COREDNS_IMAGE, ...
  if [[ $MODE == network ]]; then
    any_running && die "cluster components are running: the network check must come first (make cluster-down)"
    setup_network
    return
  fi
  if all_running && kubectl_ get --raw /readyz >/dev/null 2>&1; then
    log "cluster already up ($CLUSTER_DIR)"
    check_routes
  else
    if any_running; then
      log "cluster only partly up: taking it down first"
      "$HACK_DIR/cluster-down.sh"
    fi
    setup_network            # routes checked here, before any component starts
    # Keep the previous run's logs beside this one's.
    if [[ -d $CLUSTER_DIR/logs ]]; then rm -rf "$CLUSTER_DIR/logs.prev"; mv "$CLUSTER_DIR/logs" "$CLUSTER_DIR/logs.prev"; fi
    setup_pki
    write_configs
    start_components
  fi
  wait_for "node $NODE_NAME" 180 node_ready
  deploy_dns
  install_gateway_api_crds
  log "cluster up in $((SECONDS - T0))s: export KUBECONFIG=$KUBECONFIG_ADMIN"
}

main
