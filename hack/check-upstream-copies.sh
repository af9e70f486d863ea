#!/usr/bin/env bash
# Fails when a file of this repository shares a run of more than six lines with the source of a
# project knit builds on, at the version knit pins: every direct requirement of the repository's
# Go modules (go.mod and the tool modules under hack/), and Kubernetes itself
# (k8s.io/kubernetes@$KUBERNETES_VERSION). Their sources come from the Go module cache
# (`go mod download -json`), so the comparison is with exactly what is pinned.
#
# What counts (hack/upstream-copies): the repository's tracked source, build and manifest files
# (Go, shell, Makefile, YAML, ...; not generated files, not prose), compared line by line after
# folding white space and comment markers. Passed over as saying nothing of their own: blank
# lines, lone punctuation, package/import lines, the Apache licence header, and runs found in
# more than eight places upstream (conventions, such as RBAC rule lists, not copies).
#
# Limits: upstream code that no module zip carries is not seen, e.g. cert-manager's cmd/
# directories (nested modules the proxy does not serve) and Kubernetes' staging/ tree (compared
# through the k8s.io/* modules instead).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export GOFLAGS="${GOFLAGS% -mod=mod}"  # build the checker from go.mod as committed

args=()
for f in go.mod hack/*/go.mod; do args+=(-requirements-of "$f"); done
go run ./hack/upstream-copies -repo "$REPO_ROOT" "${args[@]}" -module "k8s.io/kubernetes@$KUBERNETES_VERSION"
