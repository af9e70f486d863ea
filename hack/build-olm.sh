#!/usr/bin/env bash
# Builds OLM (olm-operator, catalog-operator and the helpers its pods run: cpb, copy-content) and
# opm (operator-registry) from the Go module proxy into the per-user cache, once per version:
#   $KNIT_CACHE/tools/olm-<version>-<os>-<arch>/{olm,catalog,cpb,copy-content}
#   $KNIT_CACHE/tools/opm-<version>-<os>-<arch>/opm
# They come from the wrapper module hack/olm-tools (the proxy refuses version listings, which
# `go install pkg@version` needs). Prints the two directories. Cold: ~10-15 min on two busy
# cores; cached afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TOOLS="$HACK_DIR/olm-tools"
OLM_DIR="$KNIT_CACHE/tools/olm-$OLM_VERSION-$GOOS_HOST-$GOARCH_HOST"
OPM_DIR="$KNIT_CACHE/tools/opm-$OPM_VERSION-$GOOS_HOST-$GOARCH_HOST"
OLM_MOD=github.com/operator-framework/operator-lifecycle-manager
REG_MOD=github.com/operator-framework/operator-registry

pinned() { (cd "$TOOLS" && GOFLAGS= go list -m -f '{{.Version}}' "$1"); }
[[ $(pinned $OLM_MOD) == "$OLM_VERSION" ]] || die "hack/olm-tools pins $OLM_MOD $(pinned $OLM_MOD), hack/versions.env says $OLM_VERSION"
[[ $(pinned $REG_MOD) == "$OPM_VERSION" ]] || die "hack/olm-tools pins $REG_MOD $(pinned $REG_MOD), hack/versions.env says $OPM_VERSION"

# build DIR TAGS PKG...: go build each missing command of the wrapper module into DIR.
build() {
  local dir=$1 tags=$2; shift 2
  local p
  for p in "$@"; do
    [[ -x $dir/${p##*/} ]] && continue
    log "building ${p##*/} into $dir (cold: minutes)"
    (cd "$TOOLS" && GOFLAGS= go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$dir/${p##*/}.tmp" "$p") ||
      die "building $p failed"
    mv -f "$dir/${p##*/}.tmp" "$dir/${p##*/}"
  done
}

with_lock "$OLM_DIR" build "$OLM_DIR" "" \
  $OLM_MOD/cmd/olm $OLM_MOD/cmd/catalog $OLM_MOD/util/cpb $OLM_MOD/cmd/copy-content
# opm needs these tags: sqlite's JSON functions, and no gpgme (cgo) for image signatures.
with_lock "$OPM_DIR" build "$OPM_DIR" "json1,containers_image_openpgp" $REG_MOD/cmd/opm
# knit's own small helpers for OLM's pods (cp for the bundle-unpack Job, grpc_health_probe for
# catalog pods), from the same module; cheap to rebuild.
mkdir -p "$REPO_ROOT/bin/olm"
(cd "$TOOLS" && GOFLAGS= go build -trimpath -ldflags "-s -w" -o "$REPO_ROOT/bin/olm/cp" ./cp &&
  GOFLAGS= go build -trimpath -ldflags "-s -w" -o "$REPO_ROOT/bin/olm/grpc_health_probe" ./grpc-health-probe) ||
  die "building hack/olm-tools' helpers failed"
echo "$OLM_DIR"
echo "$OPM_DIR"
