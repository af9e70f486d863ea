#!/usr/bin/env bash
# Fails when the committed bundle/ differs from what `make bundle` makes from config/ (like
# verify-generated.sh), or when bundle/ does not pass validation (hack/bundle validate:
# operator-framework/api's validators with warnings as errors, and knit's own checks).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$HACK_DIR/bundle.sh" --out "$scratch/bundle"
if ! diff -ruN bundle "$scratch/bundle" >"$scratch/diff"; then
  cat "$scratch/diff" >&2
  die "bundle/ is stale: run 'make bundle' and commit the result"
fi
"$REPO_ROOT/bin/bundle" validate bundle || die "bundle/ is not valid"
log "bundle/ is up to date and valid"
