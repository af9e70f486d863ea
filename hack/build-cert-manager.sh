#!/usr/bin/env bash
# Builds the real cert-manager controller and copies its CRDs, from the Go module proxy, into
# $KNIT_CACHE/cert-manager/<version>-<launcher source hash>-<os>-<arch>/ (lib.sh: cert_manager_dir):
#   cert-manager-controller          the binary (`--version` prints the pinned version)
#   cert-manager-controller.sha256   stamp: sha256 of the launcher source it was built from
#   crds/*.yaml                      deploy/crds/*.yaml of the cert-manager module zip
#
# Upstream's cmd/controller is a nested module the proxy does not serve, and the Venafi issuer's
# dependency (github.com/Venafi/vcert/v5) cannot be fetched, so the binary is built from knit's
# small launcher module in hack/cert-manager-controller/, which runs the cert-manager controllers
# knit needs from cert-manager's own packages. See its main.go.
#
# Nothing is rebuilt when the binary reports the pinned version and its stamp matches the launcher
# source; editing the launcher (or its go.mod/go.sum) builds a new cache entry.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V=$CERT_MANAGER_VERSION
MODULE=github.com/cert-manager/cert-manager
SRC="$HACK_DIR/cert-manager-controller"
OUT=$(cert_manager_dir)
BIN="$OUT/cert-manager-controller"
STAMP="$BIN.sha256"
CRDS="$OUT/crds"

# binary_current [HASH]: the binary is built from HASH (default: the launcher source as it is now)
# and reports the pinned version.
binary_current() {
  [[ -x "$BIN" && -f "$STAMP" ]] || return 1
  [[ "$(cat "$STAMP")" == "${1:-$(cert_manager_src_hash)}" ]] || return 1
  [[ "$("$BIN" --version 2>/dev/null | head -1)" == "cert-manager-controller $V" ]]
}

crds_present() {
  compgen -G "$CRDS/*.yaml" >/dev/null
}

module_dir() {
  local dir
  dir=$(go mod download -json "$MODULE@$V" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || die "$MODULE@$V not in the module cache"
  echo "$dir"
}

copy_crds() {
  local moddir tmp
  moddir=$(module_dir)
  compgen -G "$moddir/deploy/crds/*.yaml" >/dev/null || die "no deploy/crds/*.yaml in $moddir"
  tmp=$(mktemp -d "$OUT/.crds.XXXXXX")
  cp "$moddir"/deploy/crds/*.yaml "$tmp/"
  chmod 0755 "$tmp"; chmod 0644 "$tmp"/*.yaml  # mktemp makes 0700; the module cache is read-only
  rm -rf "$CRDS"
  mv "$tmp" "$CRDS"
}

build_binary() {
  # The launcher's go.mod must pin the same cert-manager the binary claims to be.
  local pinned
  pinned=$(cd "$SRC" && go list -m -f '{{.Version}}' "$MODULE")
  [[ "$pinned" == "$V" ]] ||
    die "hack/cert-manager-controller/go.mod requires $MODULE $pinned, versions.env says $V: run (cd hack/cert-manager-controller && go get $MODULE@$V && go mod tidy)"

  local hash pkg=$MODULE/pkg/util
  hash=$(cert_manager_src_hash)
  log "building cert-manager controller $V (cold: ~5-10 min on 2 cores)"
  (
    cd "$SRC"
    go build -trimpath -ldflags "-s -w -X $pkg.AppVersion=$V" -o "$BIN.tmp" .
  )
  mv -f "$BIN.tmp" "$BIN"
  echo "$hash" >"$STAMP"
  binary_current "$hash" || die "built $BIN but it does not report cert-manager-controller $V"
}

build() {
  if binary_current && crds_present; then
    log "cert-manager $V present in $OUT"
    return
  fi
  mkdir -p "$OUT"
  binary_current || build_binary
  copy_crds
  log "cert-manager $V ready in $OUT ($(ls "$CRDS" | wc -l) CRDs)"
}

with_lock "$OUT" build
