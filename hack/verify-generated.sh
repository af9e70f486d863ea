#!/usr/bin/env bash
# Fails when the committed generated files (deepcopy, CRDs, RBAC) differ from what controller-gen
# makes from the current sources. It regenerates in a scratch copy, so the work tree is untouched.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$REPO_ROOT"
# Copy the tracked and untracked-but-not-ignored files: exactly what a commit would hold.
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$scratch" 2>/dev/null || true
(cd "$scratch" && make -s generate manifests >/dev/null)

stale=0
for path in api config/crd/bases config/rbac; do
  if ! diff -ruN "$REPO_ROOT/$path" "$scratch/$path" >"$scratch.diff" 2>&1; then
    stale=1
    cat "$scratch.diff" >&2
  fi
done
rm -f "$scratch.diff"
if [[ $stale == 1 ]]; then
  die "generated files are stale: run 'make generate manifests' and commit the result"
fi
log "generated files are up to date"
