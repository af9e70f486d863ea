#!/usr/bin/env bash
# make bench: knit-proxy beside direct traffic, nginx and haproxy on loopback.
# Installs what is missing (Debian nginx + haproxy, fortio v1.68.2 from the Go
# module proxy, cached outside the clone), builds knit-proxy, runs
# test/bench and writes bin/bench/result.json. A benchmark, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local

FORTIO_VERSION=v1.68.2  # later versions do not install from the module proxy
CACHE="${KNIT_CACHE:-${XDG_DATA_HOME:-$HOME/.local/share}/knit}"
FORTIO_DIR="$CACHE/tools/fortio-$FORTIO_VERSION"

need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [[ ! -x "$FORTIO_DIR/fortio" ]]; then
  echo "installing fortio $FORTIO_VERSION into $FORTIO_DIR"
  GOBIN="$FORTIO_DIR" go install "fortio.org/fortio@$FORTIO_VERSION"
fi
if (( $(nproc) < 2 )); then
  echo "bench needs 2 CPUs (load generator and proxy on different cores)" >&2
  exit 1
fi

mkdir -p bin/bench
go build -o bin/knit-proxy ./cmd/knit-proxy
go build -o bin/bench/bench ./test/bench

# BENCH_BASELINE=<git revision> adds that revision's knit-proxy as target knit-base, measured in
# the same interleaved rounds, so a change is judged against its parent on the same machine state.
baseline=()
if [[ -n ${BENCH_BASELINE:-} ]]; then
  src=$(mktemp -d)
  trap 'git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"' EXIT
  git worktree add --detach -q "$src" "$BENCH_BASELINE"
  (cd "$src" && go build -o "$OLDPWD/bin/bench/knit-proxy-base" ./cmd/knit-proxy)
  echo "baseline: knit-proxy at $(git rev-parse --short "$BENCH_BASELINE") as knit-base"
  baseline=(-baseline-proxy bin/bench/knit-proxy-base)
fi
bin/bench/bench -fortio "$FORTIO_DIR/fortio" -knit-proxy bin/knit-proxy -out bin/bench "${baseline[@]}" "$@"
