#!/usr/bin/env bash
# hack/cluster/check-clean.sh: fails (listing what is left) unless nothing of the local cluster
# remains: no process of ours, no link, route, mount, network namespace, iptables chain,
# /etc/hosts entry or kubelet cgroup. The e2e suite runs it after `make cluster-down`.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$HACK_DIR/cluster/env.sh"
left=()
for p in /proc/[0-9]*; do
  cmd=$( { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
  [[ $cmd == *"$CLUSTER_DIR"* || $cmd == *"$CONTAINERD_SOCK"* ]] && left+=("process ${p#/proc/}: ${cmd:0:120}")
done
for c in "${COMPONENTS[@]}"; do pid_of "$c" >/dev/null && left+=("component $c running"); done
for l in "$NODE_LINK" "$NODE_PEER" "$CNI_BRIDGE"; do ip link show "$l" >/dev/null 2>&1 && left+=("link $l"); done
while read -r r; do [[ -n $r ]] && left+=("route $r"); done < <(ip -o route show | grep -E "^(${POD_CIDR%/*}|${SERVICE_CIDR%/*}|${NODE_POD_CIDR%/*})/|dev ($NODE_LINK|$CNI_BRIDGE) ")
while read -r m; do [[ -n $m ]] && left+=("mount $m"); done < <(awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo)
if [[ -d /run/netns ]]; then
  for n in /run/netns/cni-*; do [[ -e $n ]] && left+=("netns $n"); done
fi
for ipt in iptables ip6tables; do
  for t in filter nat mangle raw; do
    n=$("$ipt" -t "$t" -S 2>/dev/null | grep -cE '^-N (KUBE-|KNIT-|CNI-)' || true)
    [[ $n == 0 ]] || left+=("$ipt $t: $n chains of ours")
  done
done
grep -q "$HOSTS_MARK" /etc/hosts && left+=("/etc/hosts entry for $REGISTRY_HOST")
for d in /sys/fs/cgroup/*/kubepods; do [[ -d $d ]] && left+=("cgroup $d"); done
# Sysctls are back to what they were before cluster-up (cluster-down keeps that list).
if [[ -f $CLUSTER_DIR/sysctl.restored ]]; then
  while IFS== read -r k v; do
    [[ -z $k ]] && continue
    cur=$(sysctl -n "$k" 2>/dev/null) || continue
    [[ $cur == "$v" ]] || left+=("sysctl $k=$cur (was $v before cluster-up)")
  done <"$CLUSTER_DIR/sysctl.restored"
fi
if ((${#left[@]})); then
  printf 'left behind by the local cluster:\n'; printf '  %s\n' "${left[@]}"
  exit 1
fi
echo "clean: no process, link, route, mount, netns, iptables chain, hosts entry or cgroup of the local cluster"
