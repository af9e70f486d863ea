#!/usr/bin/env bash
# make e2e: the Ginkgo suite in test/e2e against a real local cluster (it runs cluster-up and,
# last, cluster-down with a check that nothing is left). Extra arguments go to the test binary.
# Reports (JUnit, log) go to bin/test-reports/e2e*. Needs root.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
[[ $(id -u) == 0 ]] || die "the e2e suite needs root (it starts a local cluster)"
REPORTS="$REPO_ROOT/bin/test-reports"
mkdir -p "$REPORTS"
export GOFLAGS="${GOFLAGS% -mod=mod}"
T0=$SECONDS
status=0
go test -v -tags e2e -count=1 -timeout 60m ./test/e2e -ginkgo.v -ginkgo.junit-report="$REPORTS/e2e-junit.xml" "$@" 2>&1 |
  tee "$REPORTS/e2e.log" || status=$?
log "e2e suite finished in $((SECONDS - T0))s (exit $status); log: $REPORTS/e2e.log"
exit $status
