#!/usr/bin/env bash
# make catalog: the OLM catalog the local cluster installs knit from, built without Docker and
# imported into the cluster's containerd (it must be up: references are the digests containerd
# stores). Two operator releases in channel KNIT_CHANNEL, so an upgrade through the channel is real:
#   KNIT_VERSION            the bundle of this tree (bundle/, with image digests)
#   KNIT_VERSION+1 (patch)  this tree's operator built as its successor: the binary is told its
#                           release at link time (internal/buildinfo; the manager logs it at
#                           start), so its image differs and the running release is visible;
#                           its CSV replaces the first, and skipRange covers it
# Each release's manager image, its bundle image (/manifests, /metadata and OLM's labels) and
# the file-based catalog image (opm serve) are imported by digest.
# Writes bin/olm/catalog.env: CATALOG_IMAGE, and KNIT_RELEASES (CSV names, oldest first).
#   hack/catalog.sh [--offline]   (--offline: packs without importing; for checking the catalog)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"

OUT="$REPO_ROOT/bin/olm"
TOOL="$REPO_ROOT/bin/images/knit-images"
OPM_DIR=$("$HACK_DIR/build-olm.sh" | tail -1)
OPM="$OPM_DIR/opm"
# Without the cluster (--offline) the images are packed but not imported, and referenced by the
# digest go-containerregistry computed: enough to check the catalog (opm validate), not to serve it.
offline=no
[[ ${1:-} == --offline ]] && offline=yes
if [[ $offline == no ]]; then
  pid_of containerd >/dev/null || die "containerd of the local cluster is not running (make cluster-up; or --offline)"
fi

# pack_image TAR REF PACK-ARGS...: packs an image and imports it; prints REPO@DIGEST as containerd
# stored it (or, offline, as packed).
pack_image() {
  local tar=$1 ref=$2 packed; shift 2
  packed=$("$TOOL" pack -ref "$ref" -out "$tar" "$@") || die "packing $ref failed"
  if [[ $offline == yes ]]; then echo "${ref%:*}@${packed##* }"; return; fi
  import_by_digest "$tar" "$ref" || die "importing $ref failed"
}

eval "$("$HACK_DIR/images.sh" --refs)"   # CONTROLLER_IMAGE: the reference config/ names

rm -rf "$OUT/bundles" "$OUT/catalog"
mkdir -p "$OUT/bundles" "$OUT/catalog/knit" "$OUT/images" "$OUT/bin"
IFS=. read -r major minor patch <<<"$KNIT_VERSION"
next="$major.$minor.$((patch + 1))"
releases=("$KNIT_VERSION" "$next")
# bundle_image NAME VERSION DIR: packs the bundle in DIR as an image (its files, and OLM's bundle
# annotations as labels), imports it, and writes its olm.bundle entry into the catalog.
bundle_image() {
  local name=$1 v=$2 dir=$3 labels=() k val bref bimg
  while IFS=': ' read -r k val; do [[ $k == operators.* ]] && labels+=(-label "$k=$val"); done \
    < <(sed -n 's/^  //p' "$dir/metadata/annotations.yaml")
  bref="knit.local/knit/$name-bundle:v$v"
  bimg=$(pack_image "$OUT/images/$name-bundle-$v.tar" "$bref" \
    -add "$dir/manifests=/manifests" -add "$dir/metadata=/metadata" "${labels[@]}")
  mkdir -p "$OUT/catalog/$name"
  "$OPM" render "$dir" -o yaml | sed "s|^image: .*|image: $bimg|" >"$OUT/catalog/$name/bundle-$v.yaml"
  grep -q "^image: $bimg" "$OUT/catalog/$name/bundle-$v.yaml" || die "opm render of bundle $name $v has no image field"
  log "bundle $name $v: $bimg"
}

entries=() prev=
for v in "${releases[@]}"; do
  # The manager image of release v: this tree's operator built as release v (own digest).
  ref="${CONTROLLER_IMAGE%:*}:v$v"
  manager_bin="$OUT/bin/manager-$v"
  # Release KNIT_VERSION is the binary hack/images.sh builds for the controller image, with the
  # same flags: built to that path, go finds it up to date and does not link it again.
  built="$manager_bin"
  [[ $v == "$KNIT_VERSION" ]] && built="$REPO_ROOT/bin/images/bin/manager"
  mkdir -p "$(dirname "$built")"
  go build -ldflags "-s -w -X github.com/knit-mesh/knit/internal/buildinfo.Version=v$v" -o "$built" ./cmd/manager ||
    die "manager $v build failed"
  [[ $built == "$manager_bin" ]] || cp -f "$built" "$manager_bin"
  manager=$(pack_image "$OUT/images/manager-$v.tar" "$ref" -binary "$manager_bin" -entrypoint /manager \
    -user 65532:65532 -label "org.opencontainers.image.version=$v")
  args=(--out "$OUT/bundles/$v" --version "$v" --image "$CONTROLLER_IMAGE=$manager")
  [[ -n $prev ]] && args+=(--replaces "knit.v$prev" --skip-range ">=$prev <$v")
  "$HACK_DIR/bundle.sh" "${args[@]}"
  export KNIT_BUNDLE_TOOLS_BUILT=1
  "$REPO_ROOT/bin/bundle" validate "$OUT/bundles/$v" || die "bundle $v is not valid"
  log "release $v: manager $manager"
  bundle_image knit "$v" "$OUT/bundles/$v"
  entry="  - name: knit.v$v"
  [[ -n $prev ]] && entry+=$'\n'"    replaces: knit.v$prev"$'\n'"    skipRange: '>=$prev <$v'"
  entries+=("$entry")
  prev=$v
done
{
  printf -- '---\nschema: olm.package\nname: knit\ndefaultChannel: %s\nicon:\n  base64data: %s\n  mediatype: image/svg+xml\n' \
    "$KNIT_CHANNEL" "$(base64 -w0 config/manifests/icon.svg)"
  printf -- '---\nschema: olm.channel\npackage: knit\nname: %s\nentries:\n' "$KNIT_CHANNEL"
  printf '%s\n' "${entries[@]}"
} >"$OUT/catalog/knit/package.yaml"
# cert-manager, which knit's bundle requires (metadata/dependencies.yaml): OLM installs it from
# this package when knit is subscribed to (config/olm/cert-manager-package).
"$HACK_DIR/build-cert-manager.sh" >/dev/null
cm=${CERT_MANAGER_VERSION#v}
"$HACK_DIR/bundle.sh" --out "$OUT/bundles/cert-manager" --version "$cm" \
  --package cert-manager config/olm/cert-manager-package "$(cert_manager_dir)/crds" stable
bundle_image cert-manager "$cm" "$OUT/bundles/cert-manager"
printf -- '---\nschema: olm.package\nname: cert-manager\ndefaultChannel: stable\n---\nschema: olm.channel\npackage: cert-manager\nname: stable\nentries:\n  - name: cert-manager.v%s\n' \
  "$cm" >"$OUT/catalog/cert-manager/package.yaml"

"$OPM" validate "$OUT/catalog" || die "opm validate failed for $OUT/catalog"

# The catalog image: opm serving the catalog, and the gRPC health probe OLM's catalog pods exec.
# opm builds its cache at start in /tmp (writable by any user; without a prebuilt cache opm
# refuses to start unless told not to enforce its integrity): a cache built into the image
# would be owned by root, and opm must write a lock file into it (OLM runs catalog pods as
# user 1001; seen: "creating lock file: permission denied"). Checked as user 1001 on the host:
# serving after 2 s.
cref="knit.local/knit/knit-catalog:dev"
catalog_image=$(pack_image "$OUT/images/catalog.tar" "$cref" -binary "$OPM" -entrypoint /bin/opm -user 1001:1001 \
  -add "$REPO_ROOT/bin/olm/grpc_health_probe=/grpc_health_probe" \
  -add "$OUT/catalog=/configs" \
  -arg serve -arg /configs -arg --cache-dir=/tmp/cache -arg --cache-enforce-integrity=false \
  -label operators.operatorframework.io.index.configs.v1=/configs)
{
  echo "CATALOG_IMAGE=$catalog_image"
  echo "KNIT_RELEASES=\"${releases[*]/#/knit.v}\""
} >"$OUT/catalog.env"
log "catalog $catalog_image: package knit, channel $KNIT_CHANNEL: ${releases[*]}"
