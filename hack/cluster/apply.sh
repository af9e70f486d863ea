#!/usr/bin/env bash
# hack/cluster/apply.sh DIR [kubectl apply flags…]: renders a kustomization (kubectl's built-in
# kustomize, as a user would) and applies it to the local cluster, but only after checking that
# every image it names is already in the cluster's containerd: the kubelet must never try a pull.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$HACK_DIR/cluster/env.sh"
dir=$1; shift
# Local images keep their tag when rebuilt (:dev), so each workload's pod template is stamped with
# a checksum of what `make images` imported for its images: a changed image rolls it, nothing else does.
rendered=$(kubectl_ kustomize "$dir" | "$REPO_ROOT/bin/images/knit-images" stamp -imported "$CLUSTER_DIR/containerd/imported/by-ref") ||
  die "kustomize $dir failed (bin/images/knit-images comes with make images)"
missing=()
while read -r img; do
  [[ -z $img ]] && continue
  [[ -n $(ctr_ images ls -q "name==$img" 2>/dev/null) ]] || missing+=("$img")
done < <(grep -E '^\s*(- )?image:\s' <<<"$rendered" | sed -E 's/^\s*(- )?image:\s*//; s/["'\'']//g' | sort -u)
[[ ${#missing[@]} == 0 ]] || die "$dir names images not in containerd (run make images): ${missing[*]}"
kubectl_ apply --server-side --force-conflicts "$@" -f - <<<"$rendered" >/dev/null || die "applying $dir failed"

log "applied $dir"
