#!/usr/bin/env bash
# make proxy-conformance: h2spec (HTTP/2 conformance, built once per version into the per-user
# cache) against knit-proxy's h2c and h2 (TLS) listeners. Writes the report to
# proxy/conformance/h2spec-report.txt (committed) and prints one summary line; fails on any
# failure not listed, with its reason, in proxy/conformance/h2spec-known-failures.txt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export GOFLAGS="${GOFLAGS% -mod=mod}"  # the project's own packages build with go.mod as committed

H2SPEC=$("$HACK_DIR/build-h2spec.sh")
go run ./test/h2spec -h2spec "$H2SPEC" \
  -report proxy/conformance/h2spec-report.txt \
  -known proxy/conformance/h2spec-known-failures.txt
# The same cases against the HTTP/2 frame relay (on by default; the run above turns it off), which
# passes all of them: no known failures.
go run ./test/h2spec -h2spec "$H2SPEC" -relay \
  -report proxy/conformance/h2spec-relay-report.txt \
  -known /dev/null
