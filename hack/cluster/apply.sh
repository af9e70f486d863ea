#!/usr/bin/env bash
# hack/cluster/apply.sh DIR [kubectl apply flags…]: renders a kustomization (kubectl's built-in
# kustomize, as a user would) and applies it to the local cluster, but only after checking that
# every image it names is already in the cluster's containerd: the kubelet must never try a pull.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$HACK_DIR/cluster/env.sh"
dir=$1; shift
rendered=$(kubectl_ kustomize "$dir") || die "kustomize $dir failed"
missing=()
while read -r img; do
  [[ -z $img ]] && continue
  [[ -n $(ctr_ images ls -q "name==$img" 2>/dev/null) ]] || missing+=("$img")
done < <(grep -E '^\s*(- )?image:\s' <<<"$rendered" | sed -E 's/^\s*(- )?image:\s*//; s/["'\'']//g' | sort -u)
[[ ${#missing[@]} == 0 ]] || die "$dir names images not in containerd (run make images): ${missing[*]}"
kubectl_ apply --server-side --force-conflicts "$@" -f - <<<"$rendered" >/dev/null || die "applying $dir failed"

# Local images keep their tag when rebuilt (e.g. :dev), so a changed image would not roll its
# Deployment: stamp each pod template with a checksum of what `make images` imported for its
# images. Unchanged images leave the annotation as it is (no rollout).
while read -r ns name; do
  [[ -z $name ]] && continue
  imgs=$(kubectl_ -n "$ns" get deployment "$name" -o jsonpath='{range .spec.template.spec.containers[*]}{.image}{"\n"}{end}{range .spec.template.spec.initContainers[*]}{.image}{"\n"}{end}')
  sum=$(for i in $imgs; do cat "$CLUSTER_DIR/containerd/imported/by-ref/${i//[\/:]/_}" 2>/dev/null || echo "$i"; done | sha256sum | cut -c1-16)
  kubectl_ -n "$ns" patch deployment "$name" --type merge \
    -p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"knit.dev/images\":\"$sum\"}}}}}" >/dev/null
done < <(kubectl_ get -f - -o jsonpath='{range .items[?(@.kind=="Deployment")]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' <<<"$rendered")
log "applied $dir"
