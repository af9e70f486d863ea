# Shared helpers for hack/ scripts. Source it; do not run it.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

# Tool builds are cached per user outside the clone, keyed by version (like setup-envtest's
# ~/.local/share/kubebuilder-envtest), so a fresh clone on the same machine reuses them.
KNIT_CACHE=${KNIT_CACHE:-${XDG_DATA_HOME:-$HOME/.local/share}/knit}
GOARCH_HOST=$(go env GOARCH)
GOOS_HOST=$(go env GOOS)

export GOTOOLCHAIN=local
export CGO_ENABLED=0
# The machine may export GOFLAGS (e.g. -buildvcs=false): append, never replace.
export GOFLAGS="${GOFLAGS:-} -mod=mod"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# with_lock DIR CMD...: serialise builds of one cache entry across concurrent clones.
with_lock() {
  local dir=$1; shift
  mkdir -p "$dir"
  exec {lockfd}>"$dir/.lock"
  flock "$lockfd"
  "$@"
  flock -u "$lockfd"
}

# cert_manager_src_hash: sha256 over the cert-manager launcher module's files (names and
# contents) and the pinned version: what the cached binary was built from.
cert_manager_src_hash() {
  {
    (cd "$HACK_DIR/cert-manager-controller" &&
      find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum)
    echo "CERT_MANAGER_VERSION=$CERT_MANAGER_VERSION"
  } | sha256sum | cut -d' ' -f1
}

# cert_manager_dir: this checkout's cert-manager entry in the cache. The launcher source is part
# of the key, so clones and worktrees with different launchers each keep their own binary instead
# of rebuilding over one another's.
cert_manager_dir() {
  local h
  h=$(cert_manager_src_hash)
  echo "$KNIT_CACHE/cert-manager/$CERT_MANAGER_VERSION-${h:0:12}-$GOOS_HOST-$GOARCH_HOST"
}
