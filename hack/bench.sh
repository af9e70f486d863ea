#!/usr/bin/env bash
# make bench: knit-proxy beside direct traffic, nginx and haproxy on loopback, in every traffic
# shape (64 B GET plaintext and TLS, 1 KiB POST, 64 KiB and chunked responses, h2c streams, gRPC
# unary and server streaming, opaque TCP bulk) and on the mesh path (two knit sidecars with
# plaintext or mutual TLS between them, test/bench/twohop, beside nginx and haproxy as two TLS
# hops). BENCH_SHAPES=get64,mesh (comma-separated, see test/bench -shapes) runs only those.
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
if [[ ${BENCH_INSTRUCTIONS:-1} != 0 ]]; then
  command -v valgrind >/dev/null || need_apt+=(valgrind)
  command -v python3 >/dev/null || need_apt+=(python3)
fi
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
# With cgo, as before: callgrind (below) fails on a signal in the image's CGO_ENABLED=0 build
# (Callgrind: threads.c:247 assertion, valgrind 3.19). The two-hop fixture embeds the same proxy
# code and gets its PGO profile too.
proxy_build=(go build)
"${proxy_build[@]}" -o bin/knit-proxy ./cmd/knit-proxy
go build -o bin/bench/bench ./test/bench
pgo=()
[[ -f cmd/knit-proxy/default.pgo ]] && pgo=(-pgo "$PWD/cmd/knit-proxy/default.pgo")
"${proxy_build[@]}" "${pgo[@]}" -o bin/bench/twohop ./test/bench/twohop
go build -o bin/bench/load ./test/bench/load

# BENCH_BASELINE=<git revision> adds that revision's knit-proxy as target knit-base, measured in
# the same interleaved rounds, so a change is judged against its parent on the same machine state.
baseline=()
if [[ -n ${BENCH_BASELINE:-} ]]; then
  src=$(mktemp -d)
  trap 'git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"' EXIT
  git worktree add --detach -q "$src" "$BENCH_BASELINE"
  (cd "$src" && "${proxy_build[@]}" -o "$OLDPWD/bin/bench/knit-proxy-base" ./cmd/knit-proxy)
  echo "baseline: knit-proxy at $(git rev-parse --short "$BENCH_BASELINE") as knit-base"
  baseline=(-baseline-proxy bin/bench/knit-proxy-base)
fi
if [[ ${BENCH_LOAD:-1} != 0 ]]; then # BENCH_LOAD=0: only the instruction counts below
  bin/bench/bench -fortio "$FORTIO_DIR/fortio" -knit-proxy bin/knit-proxy -two-hop bin/bench/twohop -load bin/bench/load \
    -shapes "${BENCH_SHAPES:-}" -out bin/bench "${baseline[@]}" "$@"
fi

# Instructions per request: the same fixed number of keep-alive requests
# through each knit-proxy build under callgrind, which counts the user-space
# instructions the proxy executes. Unlike CPU seconds under load, the count
# hardly depends on what else the machine runs (rounds agree within ~1-2 %),
# so a change is judged by it against its baseline. Kernel work (syscalls)
# is not counted; the load rounds above still show it.
# BENCH_INSTRUCTIONS=0 skips this; BENCH_IR_REQUESTS and BENCH_IR_ROUNDS size it.
[[ ${BENCH_INSTRUCTIONS:-1} == 0 ]] && exit 0
# Only with the 64 B GET phase (or all phases) selected.
[[ -z ${BENCH_SHAPES:-} || ,${BENCH_SHAPES}, == *,get64,* ]] || exit 0
ir_requests=${BENCH_IR_REQUESTS:-3000}
ir_rounds=${BENCH_IR_ROUNDS:-3}
ir=$PWD/bin/bench/instructions
rm -rf "$ir" && mkdir -p "$ir"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_url() {
  for _ in $(seq 240); do curl -ksf -o /dev/null "$1" && return 0; sleep 0.5; done
  echo "bench: $1 never answered" >&2
  return 1
}
load() { # url requests
  local k=() out
  [[ $1 == https* ]] && k=(-k)
  # A generous timeout: everything runs under callgrind, tens of times slower.
  out=$("$FORTIO_DIR/fortio" load -quiet "${k[@]}" -qps 0 -c 8 -n "$2" -timeout 60s "$1" 2>&1)
  # Under callgrind on a loaded machine a rare request fails (502s were seen: 1-3 in 3000); the
  # count moves by a fraction of a per mille for each, so say so and go on.
  grep -q "^Code 200 : $2 " <<<"$out" || echo "bench: WARNING: failures loading $1: $(grep ^Code <<<"$out" | tr '\n' ' ')" >&2
}
if [[ ! -f bin/bench/tls.crt ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout bin/bench/tls.key -out bin/bench/tls.crt 2>/dev/null
fi
pids=()
cleanup_ir() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n ${src:-} ]]; then git worktree remove --force "$src" >/dev/null 2>&1 || rm -rf "$src"; fi
}
trap cleanup_ir EXIT

up_port=$(free_port)
printf '%s\n' "daemon off; master_process off; worker_processes 1; pid $ir/nginx.pid; error_log $ir/nginx-error.log warn;" \
  "events { worker_connections 1024; }" \
  "http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;" \
  "  client_body_temp_path $ir; proxy_temp_path $ir; fastcgi_temp_path $ir; uwsgi_temp_path $ir; scgi_temp_path $ir;" \
  "  server { listen 127.0.0.1:$up_port; location / { default_type text/plain;" \
  "    return 200 \"knit benchmark response body, 64 bytes long......................\"; } } }" > "$ir/nginx.conf"
nginx -p "$ir" -c "$ir/nginx.conf" -e "$ir/nginx-error.log" >"$ir/nginx.log" 2>&1 &
pids+=($!)
wait_url "http://127.0.0.1:$up_port/"

targets=(knit)
declare -A binary=([knit]=$PWD/bin/knit-proxy)
if [[ -n ${BENCH_BASELINE:-} ]]; then
  targets+=(knit-base)
  binary[knit-base]=$PWD/bin/bench/knit-proxy-base
fi
declare -A vpid url counts
order=()
for mode in plain tls; do
  for t in "${targets[@]}"; do
    key=$t-$mode port=$(free_port) admin=$(free_port) tls_block="" scheme=http
    if [[ $mode == tls ]]; then
      tls_block="tls: {certFile: $PWD/bin/bench/tls.crt, keyFile: $PWD/bin/bench/tls.key, alpn: [http/1.1]}"
      scheme=https
    fi
    printf '%s\n' "admin: {address: \"127.0.0.1:$admin\"}" \
      "listeners: [{name: bench, address: \"127.0.0.1:$port\", protocol: http, routeConfig: main${tls_block:+, $tls_block}}]" \
      "routeConfigs: [{name: main, virtualHosts: [{name: all, routes: [{name: upstream, timeout: 15s, clusters: [{name: upstream}]}]}]}]" \
      "clusters: [{name: upstream, connectTimeout: 30s, endpoints: [{address: \"127.0.0.1:$up_port\"}]}]" > "$ir/$key.yaml"
    # valgrind 3.19 does not know RDTSCP (Go's cputicks uses it when the CPU
    # has it), and callgrind loses track of Go's preemption signals.
    GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 valgrind --tool=callgrind --dump-instr=no \
      --callgrind-out-file="$ir/$key.callgrind" "${binary[$t]}" run --config "$ir/$key.yaml" \
      --watch-interval 0 >"$ir/$key.log" 2>&1 &
    vpid[$key]=$! url[$key]="$scheme://127.0.0.1:$port/"
    pids+=($!) order+=("$key")
  done
done
# The two-hop fixture (two sidecars in one process), plaintext and mutual TLS between them:
# instructions per request of both hops together.
for mode in plain mtls; do
  key=twohop-$mode port=$(free_port)
  GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 valgrind --tool=callgrind --dump-instr=no \
    --callgrind-out-file="$ir/$key.callgrind" "$PWD/bin/bench/twohop" -listen "127.0.0.1:$port" \
    -upstream "127.0.0.1:$up_port" -mtls=$([[ $mode == mtls ]] && echo true || echo false) >"$ir/$key.log" 2>&1 &
  vpid[$key]=$! url[$key]="http://127.0.0.1:$port/"
  pids+=($!) order+=("$key")
done
echo "== instructions per request (callgrind): ${order[*]}; $ir_requests keep-alive GETs on 8 connections, $ir_rounds interleaved rounds" >&2
for key in "${!vpid[@]}"; do
  wait_url "${url[$key]}"
  load "${url[$key]}" 2000 # warm-up: pools, caches, the heap's size
done
for r in $(seq "$ir_rounds"); do
  for key in "${order[@]}"; do
    callgrind_control -z "${vpid[$key]}" >/dev/null 2>&1
    load "${url[$key]}" "$ir_requests"
    callgrind_control -d "round$r" "${vpid[$key]}" >/dev/null 2>&1
    n=$(($(awk '/^totals:/ {print $2}' "$ir/$key.callgrind.$r") / ir_requests))
    counts[$key]+="$n "
    echo "   round $r/$ir_rounds $key: $n instructions/request" >&2
  done
done
args=()
for key in "${!counts[@]}"; do args+=("$key=${counts[$key]}"); done
python3 -c '
import json, statistics, sys
n, res = int(sys.argv[1]), {}
for a in sys.argv[2:]:
    key, vals = a.split("=", 1)
    v = [int(x) for x in vals.split()]
    res[key] = {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": v}
out = {"requests_per_round": n, "instructions_per_request": res, "ratios": {}}
print("\ninstructions per request (callgrind, user space; median of rounds, min-max):")
for key in sorted(res):
    print("  %-16s %8d  (%d-%d)" % (key, res[key]["median"], res[key]["min"], res[key]["max"]))
for mode in ("plain", "tls"):
    k, b = res.get("knit-" + mode), res.get("knit-base-" + mode)
    if k and b:
        name = mode + ".knit_vs_baseline.instructions_per_request"
        out["ratios"][name] = round(k["median"] / b["median"], 4)
        print("  %-50s %.3f (rounds %.3f-%.3f)" % (name, k["median"] / b["median"], k["min"] / b["max"], k["max"] / b["min"]))
p, m = res.get("twohop-plain"), res.get("twohop-mtls")
if p and m:
    name = "twohop.mtls_vs_plaintext.instructions_per_request"
    out["ratios"][name] = round(m["median"] / p["median"], 4)
    print("  %-50s %.3f (rounds %.3f-%.3f)" % (name, m["median"] / p["median"], m["min"] / p["max"], m["max"] / p["min"]))
json.dump(out, open("bin/bench/instructions.json", "w"), indent=2)
print("JSON: bin/bench/instructions.json")
' "$ir_requests" "${args[@]}"
