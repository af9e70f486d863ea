#!/usr/bin/env bash
# make conformance: the Gateway API conformance suite's mesh profiles (GAMMA) against knit on the
# local cluster, judged strictly. Steps: cluster up (with Gateway API's standard CRDs), knit's
# images and the suite's echo image (Istio's echo app, hack/build-istio-echo.sh) imported, the mesh
# installed as `make demo` does, then the suite (test/conformance, a module of its own).
#
# Writes test/conformance/reports/mesh-report.yaml (the suite's report, with knit's version) and
# mesh-summary.md (every mesh test the suite ran, inside the profiles or not), and prints the
# summary. Exit status: 0 when no test that passes in the committed summary (the baseline, from
# git HEAD) fails now; 1 on such a regression, or when the suite did not run. Tests that pass for
# the first time are named: commit the new report and summary.
#
# The cluster is taken down at the end when this script brought it up (CONFORMANCE_KEEP_CLUSTER=1
# keeps it). Run it under the cluster lock on shared machines: flock /tmp/knit-cluster.lock make conformance.
# Extra arguments go to the suite (e.g. --run-test=MeshBasic --debug); such a partial run does not
# touch the committed reports.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"
[[ $(id -u) == 0 ]] || die "make conformance needs root (it starts the local cluster)"
T0=$SECONDS

CONF_DIR="$REPO_ROOT/test/conformance"
REPORTS_DIR="$CONF_DIR/reports"
REPORT="$REPORTS_DIR/mesh-report.yaml"
SUMMARY="$REPORTS_DIR/mesh-summary.md"
# What knit claims: both mesh profiles with every extended mesh feature, plus the HTTPRoute
# features that the mesh tests outside the profiles need (MeshFrontend, MeshFrontendHostname,
# MeshPorts, MeshConsumerRoute, the 303/307/308 redirects). Never Gateway: knit is a mesh.
PROFILES=MESH-HTTP,MESH-GRPC
FEATURES=(
  Mesh HTTPRoute GRPCRoute
  MeshClusterIPMatching MeshConsumerRoute MeshHTTPRouteRewritePath MeshHTTPRouteSchemeRedirect
  MeshHTTPRouteRedirectPort MeshHTTPRouteRedirectPath MeshHTTPRouteBackendRequestHeaderModification
  MeshHTTPRouteQueryParamMatching MeshHTTPRouteNamedRouteRule
  HTTPRouteResponseHeaderModification HTTPRouteParentRefPort
  HTTPRoute303RedirectStatusCode HTTPRoute307RedirectStatusCode HTTPRoute308RedirectStatusCode
)
# Strict judging: 10 matching answers in a row, not the suite's 3 (see test/conformance).
TIMEOUTS=${CONFORMANCE_TIMEOUTS:-RequiredConsecutiveSuccesses:10}
# Tests skipped by name, comma-separated; each needs its reason in README.md.
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
"$HACK_DIR/images.sh" --import conformance-echo
"$HACK_DIR/cluster/install.sh" all
t=$SECONDS
until [[ $(kubectl_ get mesh default -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
  (( SECONDS - t < 300 )) || { kubectl_ describe mesh default || true; die "Mesh default not Ready after 300s"; }
  sleep 2
done
mesh_version=$(kubectl_ get mesh default -o jsonpath='{.status.version}')
VERSION="${mesh_version:-unknown}-$(git describe --always --dirty 2>/dev/null || echo nogit)"
log "Mesh default Ready ($((SECONDS - t))s), knit $VERSION; setup took $((SECONDS - T0))s"

# A run narrowed by extra arguments writes its report beside the committed ones, never over them.
partial=no
[[ $# -gt 0 ]] && partial=yes
mkdir -p "$REPORTS_DIR" "$REPO_ROOT/bin/test-reports"
out_report=$REPORT out_summary=$SUMMARY
if [[ $partial == yes ]]; then
  out_report="$REPO_ROOT/bin/test-reports/conformance-report.yaml"
  out_summary="$REPO_ROOT/bin/test-reports/conformance-summary.md"
fi
baseline=$(mktemp)
git show "HEAD:test/conformance/reports/mesh-summary.md" >"$baseline" 2>/dev/null || : >"$baseline"
rm -f "$out_summary.new"

log "=== conformance: the suite (profiles $PROFILES, judged with $TIMEOUTS)"
t=$SECONDS
features=$(IFS=,; echo "${FEATURES[*]}")
export KUBECONFIG=$KUBECONFIG_ADMIN
export GOFLAGS="${GOFLAGS% -mod=mod}"  # the module's go.sum as committed
# -parallel 8: the mesh tests run in parallel, and a failing test waits out its consistency
# timeout per request it checks; with Go's default (2 on this machine) that takes several times longer.
# -vet=off: vet would first analyse every package the suite depends on (many minutes cold).
go test -C "$CONF_DIR" -count=1 -vet=off -timeout 40m -parallel 8 -v -run '^TestMeshConformance$' . -args \
  --conformance-profiles="$PROFILES" \
  --supported-features="$features" \
  --namespace-labels=knit.dev/inject=enabled \
  --timeout-config-overrides="$TIMEOUTS" \
  --skip-tests="$SKIP" \
  --report-output="$out_report" \
  --knit-summary="$out_summary.new" \
  --organization=knit-mesh --project=knit --url=https://github.com/knit-mesh/knit \
  --contact=https://github.com/knit-mesh/knit/issues --version="$VERSION" --mode=default \
  "$@" 2>&1 | tee "$REPO_ROOT/bin/test-reports/conformance.log" || true
log "the suite ran for $((SECONDS - t))s; log: bin/test-reports/conformance.log"

[[ -s $out_summary.new ]] || die "the suite wrote no summary: it did not run (see bin/test-reports/conformance.log)"
mv -f "$out_summary.new" "$out_summary"
# The suite never checks that its echo pods are meshed (MeshBasic passes on plain Kubernetes).
meshed=$(sed -nE "s/^echo pods with knit's sidecar: ([0-9]+) of ([0-9]+)$/\1 \2/p" "$out_summary")
read -r n m <<<"${meshed:-0 0}"
[[ $m -gt 0 && $n == "$m" ]] || die "only $n of $m echo pods had knit's sidecar: these results do not judge knit"
chmod 0644 "$out_report" 2>/dev/null || true

# outcomes FILE: "name outcome" per row of a summary table.
outcomes() { awk -F'|' 'NF >= 5 && $2 !~ /Test|---/ { gsub(/ /, "", $2); gsub(/ /, "", $4); print $2, $4 }' "$1"; }
declare -A now
while read -r name outcome; do now[$name]=$outcome; done < <(outcomes "$out_summary")
regressions=() new=()
declare -A before
while read -r name outcome; do
  before[$name]=$outcome
  if [[ $outcome == passed && ${now[$name]:-} != passed ]]; then regressions+=("$name (${now[$name]:-not run})"); fi
done < <(outcomes "$baseline")
for name in "${!now[@]}"; do
  if [[ ${now[$name]} == passed && ${before[$name]:-} != passed ]]; then new+=("$name"); fi
done
rm -f "$baseline"

echo
echo "Gateway API conformance $GATEWAY_API_VERSION, mesh tests, knit $VERSION:"
cat "$out_summary"
echo
[[ ${#new[@]} == 0 ]] || log "passing now and not in the committed summary: ${new[*]} (commit test/conformance/reports/)"
if [[ $partial == yes ]]; then
  log "partial run (arguments: $*): reports in bin/test-reports/, not compared with the baseline"
  exit 0
fi
[[ ${#regressions[@]} == 0 ]] || die "passed in the committed summary, not now: ${regressions[*]}"
log "no regression against the committed summary"
