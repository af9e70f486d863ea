#!/usr/bin/env bash
# Runs golangci-lint, built once from the Go module proxy into the per-user cache.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V=v2.15.0
DIR="$KNIT_CACHE/tools/golangci-lint-$V"
if [[ ! -x "$DIR/golangci-lint" ]]; then
  log "building golangci-lint $V into $DIR"
  GOFLAGS=-buildvcs=false GOBIN="$DIR" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$V"
fi
cd "$REPO_ROOT"
exec "$DIR/golangci-lint" "$@"
