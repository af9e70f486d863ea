#!/usr/bin/env bash
# make conformance: the Gateway API conformance suite against knit on the local cluster, judged
# strictly: the mesh profiles (GAMMA: MESH-HTTP, MESH-GRPC) and the gateway profile (GATEWAY-HTTP,
# Gateways of class knit). Steps: cluster up (with Gateway API's standard CRDs), knit's images and
# the suite's (Istio's echo app, hack/build-istio-echo.sh; echo-basic from the conformance module)
# imported, the mesh installed as `make demo` does, then the suite twice (test/conformance, a
# module of its own).
#
# Writes bin/test-reports/conformance-{mesh,gateway}-report.yaml (the suite's reports, with knit's
# version) and -summary.md (every test the suite ran, inside the profiles or not), and prints the
# summaries. Exit status: 0 when no test that passes in the committed summary (the baseline, from
# git HEAD) fails now; 1 on such a regression, or when the suite did not run. Tests that pass for
# the first time are named. CONFORMANCE_PUBLISH=1 copies a full run's reports over the committed
# ones in test/conformance/reports (to commit); without it a run leaves the tree as it was.
#
# The cluster is taken down at the end when this script brought it up (CONFORMANCE_KEEP_CLUSTER=1
# keeps it). Run it under the cluster lock on shared machines: flock /tmp/knit-cluster.lock make conformance.
# Extra arguments go to the suite (e.g. --run-test=MeshBasic --debug); such a partial run is not
# compared with the baseline and never published.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"
[[ $(id -u) == 0 ]] || die "make conformance needs root (it starts the local cluster)"
T0=$SECONDS

CONF_DIR="$REPO_ROOT/test/conformance"
REPORTS_DIR="$CONF_DIR/reports"
MESH_FEATURES=(
  Mesh HTTPRoute GRPCRoute
  MeshClusterIPMatching MeshConsumerRoute MeshHTTPRouteRewritePath MeshHTTPRouteSchemeRedirect
  MeshHTTPRouteRedirectPort MeshHTTPRouteRedirectPath MeshHTTPRouteBackendRequestHeaderModification
  MeshHTTPRouteQueryParamMatching MeshHTTPRouteNamedRouteRule
  HTTPRouteResponseHeaderModification HTTPRouteParentRefPort
  HTTPRoute303RedirectStatusCode HTTPRoute307RedirectStatusCode HTTPRoute308RedirectStatusCode
)
# What knit's gateways claim: GATEWAY-HTTP and GATEWAY-GRPC core (Gateway, HTTPRoute, GRPCRoute, ReferenceGrant).
GATEWAY_FEATURES=(Gateway HTTPRoute GRPCRoute ReferenceGrant)
# Gateway tests skipped by name, comma-separated, each with its reason in README.md (none today).
GATEWAY_SKIP=
# Strict judging: 10 matching answers in a row, not the suite's 3 (see test/conformance).
TIMEOUTS=${CONFORMANCE_TIMEOUTS:-RequiredConsecutiveSuccesses:10}
# Mesh tests skipped by name, comma-separated; each needs its reason in README.md.
SKIP=${CONFORMANCE_SKIP_TESTS:-}

was_up=no
kubectl_ get --raw /readyz >/dev/null 2>&1 && was_up=yes
finish() {
  local rc=$?
  if [[ $was_up == no && ${CONFORMANCE_KEEP_CLUSTER:-0} != 1 ]]; then
    log "taking the local cluster down (CONFORMANCE_KEEP_CLUSTER=1 keeps it)"
    "$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || log "warning: cluster-down failed"
  fi
  log "make conformance: $((SECONDS - T0))s, exit $rc"
}
trap finish EXIT

log "=== conformance: cluster, images, mesh"
"$HACK_DIR/cluster-up.sh"
"$HACK_DIR/images.sh"
"$HACK_DIR/images.sh" --import conformance-echo conformance-gateway
"$HACK_DIR/cluster/install.sh" all
t=$SECONDS
until [[ $(kubectl_ get mesh default -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
  (( SECONDS - t < 300 )) || { kubectl_ describe mesh default || true; die "Mesh default not Ready after 300s"; }
  sleep 2
done
mesh_version=$(kubectl_ get mesh default -o jsonpath='{.status.version}')
VERSION="${mesh_version:-unknown}-$(git describe --always --dirty 2>/dev/null || echo nogit)"
log "Mesh default Ready ($((SECONDS - t))s), knit $VERSION; setup took $((SECONDS - T0))s"

# A run narrowed by extra arguments writes its reports beside the committed ones, never over them.
# CONFORMANCE_RUNS=mesh or =gateway runs one of the two.
partial=no
[[ $# -gt 0 ]] && partial=yes
RUNS=${CONFORMANCE_RUNS:-mesh gateway}
mkdir -p "$REPORTS_DIR" "$REPO_ROOT/bin/test-reports"
export KUBECONFIG=$KUBECONFIG_ADMIN
export GOFLAGS="${GOFLAGS% -mod=mod}"  # the module's go.sum as committed

# outcomes FILE: "name outcome" per row of a summary table.
outcomes() { awk -F'|' 'NF >= 5 && $2 !~ /Test|---/ { gsub(/ /, "", $2); gsub(/ /, "", $4); print $2, $4 }' "$1"; }

# suite KIND TEST PROFILES FEATURES SKIP [ARGS…]: one run of the suite (TestMeshConformance or
# TestGatewayConformance), its report and summary under reports/KIND-*, compared with the
# committed summary. Appends regressions to the global array.
regressions=()
suite() {
  local kind=$1 test=$2 profiles=$3 features=$4 skip=$5; shift 5
  local report="$REPO_ROOT/bin/test-reports/conformance-$kind-report.yaml"
  local summary="$REPO_ROOT/bin/test-reports/conformance-$kind-summary.md"
  local baseline; baseline=$(mktemp)
  git show "HEAD:test/conformance/reports/$kind-summary.md" >"$baseline" 2>/dev/null || : >"$baseline"
  rm -f "$summary.new"
  log "=== conformance ($kind): the suite (profiles $profiles, judged with $TIMEOUTS)"
  local t=$SECONDS
  # -parallel 8: the tests run in parallel, and a failing test waits out its consistency
  # timeout per request it checks; with Go's default (2 on this machine) that takes several times longer.
  # -vet=off: vet would first analyse every package the suite depends on (many minutes cold).
  go test -C "$CONF_DIR" -count=1 -vet=off -timeout 40m -parallel 8 -v -run "^$test\$" . -args \
    --conformance-profiles="$profiles" \
    --supported-features="$features" \
    --timeout-config-overrides="$TIMEOUTS" \
    --skip-tests="$skip" \
    --report-output="$report" \
    --knit-summary="$summary.new" --knit-node-link="$NODE_LINK" \
    --organization=knit-mesh --project=knit --url=https://github.com/knit-mesh/knit \
    --contact=https://github.com/knit-mesh/knit/issues --version="$VERSION" --mode=default \
    "$@" 2>&1 | tee "$REPO_ROOT/bin/test-reports/conformance-$kind.log" || true
  log "the $kind suite ran for $((SECONDS - t))s; log: bin/test-reports/conformance-$kind.log"

  [[ -s $summary.new ]] || die "the $kind suite wrote no summary: it did not run (see bin/test-reports/conformance-$kind.log)"
  mv -f "$summary.new" "$summary"
  if [[ $kind == mesh ]]; then
    # The suite never checks that its echo pods are meshed (MeshBasic passes on plain Kubernetes).
    local meshed n m
    meshed=$(sed -nE "s/^echo pods with knit's sidecar: ([0-9]+) of ([0-9]+)$/\1 \2/p" "$summary")
    read -r n m <<<"${meshed:-0 0}"
    [[ $m -gt 0 && $n == "$m" ]] || die "only $n of $m echo pods had knit's sidecar: these results do not judge knit"
  fi
  chmod 0644 "$report" 2>/dev/null || true

  local -A now before
  local name outcome new=()
  while read -r name outcome; do now[$name]=$outcome; done < <(outcomes "$summary")
  while read -r name outcome; do
    before[$name]=$outcome
    if [[ $outcome == passed && ${now[$name]:-} != passed ]]; then regressions+=("$name (${now[$name]:-not run})"); fi
  done < <(outcomes "$baseline")
  for name in "${!now[@]}"; do
    if [[ ${now[$name]} == passed && ${before[$name]:-} != passed ]]; then new+=("$name"); fi
  done
  rm -f "$baseline"
  echo
  echo "Gateway API conformance $GATEWAY_API_VERSION, $kind tests, knit $VERSION:"
  cat "$summary"
  echo
  [[ ${#new[@]} == 0 ]] || log "passing now and not in the committed $kind summary: ${new[*]} (CONFORMANCE_PUBLISH=1 make conformance, then commit test/conformance/reports/)"
  published+=("$kind")
}
published=()

# The mesh run: what knit claims is both mesh profiles with every extended mesh feature, plus the
# HTTPRoute features that the mesh tests outside the profiles need (MeshFrontend,
# MeshFrontendHostname, MeshPorts, MeshConsumerRoute, the 303/307/308 redirects). The suite's
# namespaces are labelled for injection: its echo pods are meshed.
if [[ " $RUNS " == *" mesh "* ]]; then
  suite mesh TestMeshConformance MESH-HTTP,MESH-GRPC "$(IFS=,; echo "${MESH_FEATURES[*]}")" "$SKIP" \
    --namespace-labels=knit.dev/inject=enabled "$@"
fi
# The gateway run: Gateways of class knit (GatewayClass installed by the operator), the suite's
# echo-basic backends not meshed.
if [[ " $RUNS " == *" gateway "* ]]; then
  suite gateway TestGatewayConformance GATEWAY-HTTP,GATEWAY-GRPC "$(IFS=,; echo "${GATEWAY_FEATURES[*]}")" \
    "${CONFORMANCE_GATEWAY_SKIP_TESTS:-$GATEWAY_SKIP}" --gateway-class=knit "$@"
fi

if [[ $partial == yes ]]; then
  log "partial run (arguments: $*): reports in bin/test-reports/, not compared with the baseline"
  exit 0
fi
[[ ${#regressions[@]} == 0 ]] || die "passed in the committed summaries, not now: ${regressions[*]}"
log "no regression against the committed summaries"
if [[ ${CONFORMANCE_PUBLISH:-0} == 1 ]]; then
  for kind in "${published[@]}"; do
    cp "$REPO_ROOT/bin/test-reports/conformance-$kind-report.yaml" "$REPORTS_DIR/$kind-report.yaml"
    cp "$REPO_ROOT/bin/test-reports/conformance-$kind-summary.md" "$REPORTS_DIR/$kind-summary.md"
  done
  log "published to test/conformance/reports/: ${published[*]}"
fi
