#!/usr/bin/env bash
# `make run`: a local kube-apiserver + etcd + cert-manager controller (built by hack/, no cluster
# needed), knit's CRDs, and the knit manager, started in the background; then the sample Mesh is
# applied and `kubectl get mesh` printed. `make run-stop` (or `hack/run-local.sh stop`) stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

STATE="$REPO_ROOT/.run"
PIDFILE="$STATE/localenv.pid"
KUBECTL="$REPO_ROOT/bin/k8s/kubectl"
export KUBEBUILDER_ASSETS="$REPO_ROOT/bin/k8s"
export KNIT_CERT_MANAGER_DIR="$REPO_ROOT/bin/cert-manager"

stop() {
  if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid; pid=$(cat "$PIDFILE")
    log "stopping the local environment (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE" "$STATE/ready"
}

if [[ ${1:-} == stop ]]; then stop; exit 0; fi

stop
mkdir -p "$STATE"
go build -o bin/localenv ./test/cmd/localenv
log "starting kube-apiserver, etcd, cert-manager and the knit manager (log: .run/localenv.log)"
nohup bin/localenv --state "$STATE" --manager bin/manager >"$STATE/localenv.log" 2>&1 &
echo $! >"$PIDFILE"

for _ in $(seq 1 240); do
  [[ -f $STATE/ready ]] && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { cat "$STATE/localenv.log" >&2; die "the local environment did not start"; }
  sleep 0.5
done
[[ -f $STATE/ready ]] || { cat "$STATE/localenv.log" >&2; die "the local environment did not become ready in 120s"; }
grep '^testbed:\|^localenv:' "$STATE/localenv.log" | sed 's/^/  /' >&2

export KUBECONFIG="$STATE/kubeconfig"
"$KUBECTL" apply -k config/samples
"$KUBECTL" wait mesh/default --for=jsonpath='{.status.conditions[?(@.type=="Reconciled")].status}'=True --timeout=60s >/dev/null

cat <<MSG

knit is running against a local API server (no cluster: nothing runs pods here; \`make demo\` will).
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl describe mesh default
  kubectl apply -f config/samples/invalid/mesh_wrong_name.yaml     # refused: the Mesh is a singleton
  kubectl apply -f config/samples/invalid/mesh_bad_renewbefore.yaml # refused: a CEL rule says what to fix
  make run-stop                                                    # stop it all

MSG
"$KUBECTL" get mesh -o wide
