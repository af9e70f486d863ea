#!/usr/bin/env bash
# make olm-up: runs OLM (olm-operator, catalog-operator; OLM_VERSION in hack/versions.env) on
# the local cluster from a local image, and builds and imports knit's catalog (hack/catalog.sh).
# The cluster must be up (make cluster-up). Idempotent. Writes bin/olm/olm.env: OLM_IMAGE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"
pid_of containerd >/dev/null || die "containerd of the local cluster is not running (make cluster-up)"

OUT="$REPO_ROOT/bin/olm"
dirs=$("$HACK_DIR/build-olm.sh") || die "building OLM and opm failed"
OLM_DIR=$(head -1 <<<"$dirs") OPM_DIR=$(tail -1 <<<"$dirs")
"$HACK_DIR/images.sh" --import pause >/dev/null   # builds bin/images/knit-images as well
eval "$("$HACK_DIR/images.sh" --refs)"           # OLM_IMAGE: the tag config/images names

# One image with OLM's commands under /bin (on PATH), as OLM's own image has them: the
# deployments run /bin/olm and /bin/catalog; the bundle-unpack Job runs /bin/cp and /bin/cpb
# (--util-image) and `opm alpha bundle extract` (--opmImage) from it.
# Its ~270 MB of pinned binaries take half a minute to pack on a busy machine, so the tarball is
# kept in the per-user cache under a hash of everything that goes into it (a clean clone reuses it).
mkdir -p "$OUT/images"
pack=(pack -ref "$OLM_IMAGE" -binary "$OLM_DIR/olm" -entrypoint /bin/olm -user 65532:65532
  -add "$OLM_DIR/catalog=/bin/catalog" -add "$OLM_DIR/cpb=/bin/cpb" -add "$OLM_DIR/copy-content=/bin/copy-content"
  -add "$OUT/cp=/bin/cp" -add "$OPM_DIR/opm=/bin/opm" -path /bin:/)
key=$( { sha256sum "$REPO_ROOT/bin/images/knit-images" "$OLM_DIR"/{olm,catalog,cpb,copy-content} "$OUT/cp" "$OPM_DIR/opm" | cut -d' ' -f1
  echo "${pack[*]}"; } | sha256sum | cut -c1-16)
olm_tar="$KNIT_CACHE/images/olm-$OLM_VERSION-$key.tar"
pack_olm() {
  [[ -f $olm_tar ]] && return
  "$REPO_ROOT/bin/images/knit-images" "${pack[@]}" -out "$olm_tar.tmp" >/dev/null && mv -f "$olm_tar.tmp" "$olm_tar"
}
with_lock "$KNIT_CACHE/images" pack_olm; [[ -f $olm_tar ]] || die "packing the OLM image failed"
olm_ref=$(import_by_digest "$olm_tar" "$OLM_IMAGE") || die "importing the OLM image failed"
echo "OLM_IMAGE=$olm_ref" >"$OUT/olm.env"

# OLM's CRDs from its module (as cert-manager's come from cert-manager's), then knit's manifests.
crds="$(cd "$HACK_DIR/olm-tools" && GOFLAGS= go list -m -f '{{.Dir}}' github.com/operator-framework/operator-lifecycle-manager)/deploy/chart/crds"
[[ -d $crds ]] || die "no OLM CRDs at $crds"
kubectl_ apply --server-side --force-conflicts -f "$crds" >/dev/null || die "applying OLM's CRDs failed"
kubectl_ wait --for condition=Established --timeout=60s -f "$crds" >/dev/null || die "OLM's CRDs are not established"
kubectl_ kustomize config/olm | sed "s|OLM_IMAGE|$olm_ref|g; s|image: $OLM_IMAGE\$|image: $olm_ref|" |
  kubectl_ apply --server-side --force-conflicts -f - >/dev/null || die "applying config/olm failed"
for d in olm-operator catalog-operator; do
  kubectl_ -n olm rollout status "deployment/$d" --timeout=180s >/dev/null ||
    { kubectl_ -n olm get pods -o wide; kubectl_ -n olm logs "deploy/$d" --tail=30 || true; die "OLM's $d did not come up"; }
done
log "OLM $OLM_VERSION running ($olm_ref)"
"$HACK_DIR/catalog.sh"
