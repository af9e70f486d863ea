#!/usr/bin/env bash
# make bundle: generates the OLM bundle (registry+v1) from config/manifests, as operator-sdk
# projects do, with hack/bundle in place of `operator-sdk generate bundle`:
#   hack/bundle.sh                       bundle/ at KNIT_VERSION (hack/versions.env), committed
#   hack/bundle.sh --out DIR [--version V] [--replaces CSV] [--skip-range R] [--image FROM=TO]...
#                                        a bundle elsewhere (make catalog: digests of built images)
# The image references of bundle/ are those of config/images; a catalog build replaces them with
# the digests of the images it built (hack/catalog.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

out=bundle version=$KNIT_VERSION args=() config=config/manifests package=knit channel=$KNIT_CHANNEL extra= related=yes
icon=config/manifests/icon.svg
while [[ $# -gt 0 ]]; do
  case $1 in
    # Another package from another kustomization (the test catalog's cert-manager), with the
    # YAML files of DIR appended (its CRDs); no related mesh images, no dependencies.
    --package) package=$2; config=$3; extra=$4; channel=$5; related=no icon=; args+=(-no-dependencies); shift 5 ;;
    --out) out=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --replaces) args+=(-replaces "$2"); shift 2 ;;
    --skip-range) args+=(-skip-range "$2"); shift 2 ;;
    --image) args+=(-image "$2"); shift 2 ;;
    --related) args+=(-related "$2"); shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done

KUBECTL="$KNIT_CACHE/k8s/$KUBERNETES_VERSION-$GOOS_HOST-$GOARCH_HOST/kubectl"
# The tools, once per caller: hack/catalog.sh generates three bundles in a row and sets
# KNIT_BUNDLE_TOOLS_BUILT after the first (each build check takes long on busy cores).
if [[ -z ${KNIT_BUNDLE_TOOLS_BUILT:-} ]]; then
  "$HACK_DIR/build-kube-binaries.sh" >/dev/null
  api=$(cd "$HACK_DIR/bundle" && GOFLAGS= go list -m -f '{{.Version}}' github.com/operator-framework/api)
  [[ $api == "$OPERATOR_FRAMEWORK_API_VERSION" ]] || die "hack/bundle pins operator-framework/api $api, hack/versions.env says $OPERATOR_FRAMEWORK_API_VERSION"
  # Under bin/'s lock (hack/images.sh builds knit-images too): make test and make e2e run beside
  # each other in .ci/run, and a build running into a path the other executes leaves it half a file.
  build_tools() {
    (cd "$HACK_DIR/bundle" && GOFLAGS="${GOFLAGS% -mod=mod}" go build -o "$REPO_ROOT/bin/bundle" .) || die "building hack/bundle failed"
    # The mesh's own images (per supported mesh version) are related images: the operator deploys them.
    (cd "$HACK_DIR/images" && go build -o "$REPO_ROOT/bin/images/knit-images" .) || die "building hack/images failed"
  }
  with_lock "$REPO_ROOT/bin" build_tools
fi
if [[ $related == yes ]]; then
  while read -r kind ref; do
    v=${ref##*:}
    args+=(-related "$kind-${v//./-}=$ref")
  done < <("$REPO_ROOT/bin/images/knit-images" mesh -versions internal/versions/versions.yaml | sort)
fi
[[ -n $icon ]] && args+=(-icon "$icon")

{
  "$KUBECTL" kustomize "$config"
  if [[ -n $extra ]]; then for f in "$extra"/*.yaml; do printf -- '\n---\n'; cat "$f"; done; fi
} | "$REPO_ROOT/bin/bundle" generate -in - -out "$out" -package "$package" -version "$version" \
    -channels "$channel" -default-channel "$channel" "${args[@]}" ||
  die "generating the bundle failed"
log "bundle $out: $package.v$version"
