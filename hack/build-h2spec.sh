#!/usr/bin/env bash
# Builds h2spec (the HTTP/2 conformance suite) from the Go module proxy into
# $KNIT_CACHE/tools/h2spec-<version>-<os>-<arch>/h2spec, once per version, and prints its path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V=$H2SPEC_VERSION
OUT="$KNIT_CACHE/tools/h2spec-$V-$GOOS_HOST-$GOARCH_HOST"
BIN="$OUT/h2spec"

build() {
  [[ -x "$BIN" ]] && return 0
  log "building h2spec $V into $OUT"
  # Outside the clone, so the project's go.mod is not involved.
  (cd "$OUT" && GOFLAGS= GOBIN="$OUT" go install "github.com/summerwind/h2spec/cmd/h2spec@$V")
  [[ -x "$BIN" ]] || die "h2spec $V did not build"
}
with_lock "$OUT" build
echo "$BIN"
