#!/usr/bin/env bash
# The project's test command (`make test`, and what .ci/run calls):
#   1. generated files are not stale, and no file repeats upstream code (check-upstream-copies);
#      the OLM bundle is not stale and passes its validators (verify-bundle.sh, hack/bundle);
#   2. unit tests, and the integration suite against a real kube-apiserver + etcd + cert-manager;
#   3. short fuzz runs;
# then one summary of what ran.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

REPORTS="$REPO_ROOT/bin/test-reports"
# Only this command's reports: .ci/run runs make e2e beside it, which writes bin/test-reports/e2e*.
rm -rf "$REPORTS"/{unit.json,integration.json,integration-junit.xml,logs}; mkdir -p "$REPORTS"
export KUBEBUILDER_ASSETS="$REPO_ROOT/bin/k8s"
export KNIT_CERT_MANAGER_DIR="$REPO_ROOT/bin/cert-manager"
export KNIT_TEST_LOGS="$REPORTS/logs"
export KUBEBUILDER_CONTROLPLANE_START_TIMEOUT=${KUBEBUILDER_CONTROLPLANE_START_TIMEOUT:-90s}
export GOFLAGS="${GOFLAGS% -mod=mod}"  # tests use go.mod as committed

declare -A result
status=0
step() { # step NAME CMD...: run one stage, remember its outcome, carry on to the summary.
  local name=$1 t=$SECONDS; shift
  log "=== $name"
  if "$@"; then result[$name]=passed; else result[$name]=FAILED; status=1; fi
  result[$name]+=" ($((SECONDS - t))s)"
}

step generated "$HACK_DIR/verify-generated.sh"
step upstream-copies "$HACK_DIR/check-upstream-copies.sh"
# The OLM bundle: bundle/ is current and passes operator-framework/api's validators (warnings as
# errors) and knit's checks; the validator's own tests break copies of it on purpose.
step bundle "$HACK_DIR/verify-bundle.sh"
step bundle-validator go test -C hack/bundle -count=1 ./...

# Unit tests of every package but the integration suite, then the suite itself, verbosely, so
# the log shows the real processes it starts.
unit_pkgs=$(go list ./... | grep -v '/test/integration')
step unit go tool gotestsum --format pkgname --jsonfile "$REPORTS/unit.json" -- -count=1 $unit_pkgs
# The proxy's allocations per request on its request paths, printed for the log; the unit step's
# TestRequestPathAllocationCeilings (proxy/dataplane) fails when a path goes above its ceiling.
step request-allocs go test -count=1 -run '^$' -bench RequestPath -benchtime 2000x -benchmem ./proxy/dataplane
# The cert-manager launcher is a module of its own; -trimpath as in hack/build-cert-manager.sh, so
# the packages that build compiled are reused, and no vet (it would analyse all of cert-manager's
# ~1,200 dependency packages first: many minutes).
step launcher go test -C hack/cert-manager-controller -trimpath -vet=off -count=1 ./...
# The image packer (hack/images) is a module of its own too.
step images-tool go test -C hack/images -count=1 ./...
step integration go tool gotestsum --format standard-verbose --jsonfile "$REPORTS/integration.json" -- \
  -count=1 -timeout 20m ./test/integration/... -ginkgo.v -ginkgo.junit-report="$REPORTS/integration-junit.xml"

if grep -q '^fuzz:' Makefile; then
  step fuzz make -s fuzz
fi

# HTTP/2 conformance of the proxy (h2spec); its last line is the summary.
conformance_summary=
proxy_conformance() {
  local out rc=0
  out=$("$HACK_DIR/proxy-conformance.sh" 2>&1) || rc=$?
  echo "$out"
  conformance_summary=$(grep '^h2spec' <<<"$out" | tail -1)
  return $rc
}
step proxy-conformance proxy_conformance

count() { # count FILE ACTION: number of Go tests (not packages) with that outcome.
  [[ -f $1 ]] || { echo 0; return; }
  grep -c "\"Action\":\"$2\",\"Package\":\"[^\"]*\",\"Test\"" "$1" || true
}
specs=$(grep -ho 'Ran [0-9]* of [0-9]* Specs' "$REPORTS/integration.json" 2>/dev/null | tail -1 || true) # none when the suite did not build
echo
echo "==================== test summary ===================="
for s in generated upstream-copies bundle bundle-validator unit request-allocs launcher images-tool integration fuzz proxy-conformance; do
  [[ -n ${result[$s]:-} ]] && printf '  %-18s %s\n' "$s" "${result[$s]}"
done
[[ -n $conformance_summary ]] && printf '  %s\n' "$conformance_summary"
printf '  go tests:    %s passed, %s failed, %s skipped (unit + integration)\n' \
  $(( $(count "$REPORTS/unit.json" pass) + $(count "$REPORTS/integration.json" pass) )) \
  $(( $(count "$REPORTS/unit.json" fail) + $(count "$REPORTS/integration.json" fail) )) \
  $(( $(count "$REPORTS/unit.json" skip) + $(count "$REPORTS/integration.json" skip) ))
printf '  ginkgo:      %s\n' "${specs:-no integration specs ran}"
echo "  reports:     $REPORTS (component logs under logs/)"
echo "======================================================"
exit $status
