#!/usr/bin/env bash
# make cluster-down: stops exactly what hack/cluster-up.sh started (pid files) and the pods'
# containers, then removes what it made: mounts under the state directory and the pods' network
# namespaces, the pods' bridge and the node veth (and with it the pod/service CIDR routes),
# iptables chains (ours, kubelet's and kube-proxy's), sysctls (restored), the /etc/hosts entry,
# the kubelet's cgroups. Keeps the PKI and containerd's image store (a warm start re-imports
# nothing), wipes etcd and kubelet state (the next cluster starts empty). Safe to run anytime.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
[[ $(id -u) == 0 ]] || die "cluster-down needs root"
T0=$SECONDS

stop() { # stop NAME: SIGTERM, wait up to 15 s, SIGKILL
  local name=$1 pid i
  pid=$(pid_of "$name") || { rm -f "$CLUSTER_DIR/run/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
  if [[ -d /proc/$pid ]]; then log "$name did not stop on SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$CLUSTER_DIR/run/$name.pid"
  log "stopped $name ($pid)"
}

# Pids of processes started on behalf of our containerd: its shims (their command line names our
# socket) and every process in the kubelet's pod cgroups.
container_pids() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "containerd-shim.* -address $CONTAINERD_SOCK" && echo "${p#/proc/}"
  done
  find /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null
  return 0
}

netns_ours() { # the pods' network namespaces: those our containerd knows or made since cluster-up
  [[ -d /run/netns ]] || return 0
  local n db="$CLUSTER_DIR/containerd/root/io.containerd.metadata.v1.bolt/meta.db"
  for n in $(ls /run/netns); do
    [[ $n == cni-* ]] || continue
    if grep -qx "$n" "$CLUSTER_DIR/run/netns.ours" 2>/dev/null || { [[ -f $db ]] && grep -aqF "$n" "$db"; }; then
      echo "$n"
    elif ! grep -qx "$n" "$CLUSTER_DIR/run/netns.before" 2>/dev/null; then
      echo "$n"
    fi
  done
}

stop_containers() {
  if pid_of containerd >/dev/null && ctr_ version >/dev/null 2>&1; then
    local ids id
    # Remember the sandboxes' network namespaces before their records go.
    for id in $(ctr_ containers ls -q 2>/dev/null); do
      ctr_ containers info "$id" 2>/dev/null | grep -o 'netns/cni-[0-9a-f-]*' | sed 's|netns/||'
    done | sort -u >>"$CLUSTER_DIR/run/netns.ours"
    ids=$(ctr_ tasks ls -q 2>/dev/null || true)
    for id in $ids; do ctr_ tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $ids; do ctr_ tasks rm -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$id" >/dev/null 2>&1 || true; done
  fi
}

kill_leftovers() {
  local pids i
  for i in 1 2 3 4 5; do
    pids=$(container_pids | sort -u)
    [[ -z $pids ]] && return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  done
  log "warning: processes left: $(container_pids | sort -u | tr '\n' ' ')"
}

unmount_ours() {
  local m
  # Deepest first; mountinfo field 5 is the mount point (octal escapes for spaces are not expected here).
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done < <(awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  local ours; ours=$(netns_ours)
  for m in $ours; do
    umount "/run/netns/$m" 2>/dev/null || umount -l "/run/netns/$m" 2>/dev/null || true
    rm -f "/run/netns/$m" 2>/dev/null
  done
  # `ip netns add` (e.g. proxy/capture's tests) bind-mounts /run/netns onto itself when it is not
  # yet a mount point; done while our pods ran, that hides their namespace mounts under the new
  # mount. If only ours remain, lift that bind (iproute2 makes it again when needed) and retry.
  local rest; rest=$(ls /run/netns 2>/dev/null)
  if [[ -n $rest ]] && mountpoint -q /run/netns && [[ -z $(comm -23 <(tr ' ' '\n' <<<"$rest" | sort) <(tr ' ' '\n' <<<"$ours" | sort)) ]]; then
    while mountpoint -q /run/netns && umount /run/netns 2>/dev/null; do :; done
    for m in $ours; do
      umount "/run/netns/$m" 2>/dev/null || umount -l "/run/netns/$m" 2>/dev/null || true
      rm -f "/run/netns/$m" 2>/dev/null
    done
  fi
  [[ -f $CLUSTER_DIR/run/netns-bind-ours ]] && [[ -z $(ls /run/netns 2>/dev/null) ]] && umount /run/netns 2>/dev/null
  return 0
}

remove_links() {
  local l
  for l in $(ip -o link show master "$CNI_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$l" 2>/dev/null || true
  done
  ip link del "$CNI_BRIDGE" 2>/dev/null || true
  ip link del "$NODE_LINK" 2>/dev/null || true   # takes its peer and the CIDR routes with it
  ip route del "$POD_CIDR" 2>/dev/null || true
  ip route del "$SERVICE_CIDR" 2>/dev/null || true
}

# Removes every chain named KUBE-*, KNIT-* or CNI-* (and the rules that jump to them) from every table.
clean_iptables() {
  local ipt table chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for table in filter nat mangle raw; do
      "$ipt" -t "$table" -S >/dev/null 2>&1 || continue
      # rules in any chain that jump to one of ours
      "$ipt" -t "$table" -S | grep -E -- '-j (KUBE-|KNIT-|CNI-)' | sed 's/^-A /-D /' | while read -r rule; do
        eval "$ipt -t $table $rule" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '/^-N (KUBE-|KNIT-|CNI-)/ {print $2}'); do
        "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$table" -S | awk '/^-N (KUBE-|KNIT-|CNI-)/ {print $2}'); do
        "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

restore_sysctls() {
  local f="$CLUSTER_DIR/run/sysctl.orig" kv
  [[ -f $f ]] || return 0
  while read -r kv; do [[ -n $kv ]] && sysctl -qw "$kv" 2>/dev/null || true; done <"$f"
  mv -f "$f" "$CLUSTER_DIR/sysctl.restored"   # hack/cluster/check-clean.sh compares against it
  rm -f "$CLUSTER_DIR/run/netns.before"
}

remove_cgroups() {
  local root d
  for root in /sys/fs/cgroup/*/kubepods; do
    [[ -d $root ]] || continue
    find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

main() {
  set +e +o pipefail   # best effort: every step runs; hack/cluster/check-clean.sh verifies the result
  [[ -d $CLUSTER_DIR ]] || { log "no cluster state in $CLUSTER_DIR"; }
  stop kube-proxy & stop kubelet & wait
  stop_containers
  stop kube-scheduler & stop kube-controller-manager & wait
  stop kube-apiserver
  stop etcd & stop containerd & wait
  kill_leftovers
  unmount_ours
  remove_links
  clean_iptables
  restore_sysctls
  sed -i "/$HOSTS_MARK/d" /etc/hosts
  remove_cgroups
  find /var/log/containers -maxdepth 1 -type l -lname "$CLUSTER_DIR/*" -delete 2>/dev/null || true
  # Start empty next time; keep the PKI and containerd's image store.
  rm -rf "$CLUSTER_DIR/etcd" "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/pod-logs" "$CLUSTER_DIR/cni/ipam" \
    "$CLUSTER_DIR/containerd/state" "$CLUSTER_DIR/run"
  log "cluster down in $((SECONDS - T0))s"
}

main
