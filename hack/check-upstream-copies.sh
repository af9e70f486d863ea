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

MODULE_DIRS=(. hack/cert-manager-controller hack/cert-manager-images hack/coredns hack/images)

# Direct requirements of every module of the repository, as path@version, once each.
requirements() {
  local d
  for d in "${MODULE_DIRS[@]}"; do
    (cd "$d" && go list -m -f '{{if not .Indirect}}{{if not .Main}}{{.Path}}@{{.Version}}{{end}}{{end}}' all) ||
      die "listing the requirements of $d/go.mod"
  done | grep -v '^$' | sort -u
  echo "k8s.io/kubernetes@$KUBERNETES_VERSION"
}

args=()
while read -r mod; do args+=(-module "$mod"); done < <(requirements)
go run ./hack/upstream-copies -repo "$REPO_ROOT" "${args[@]}"
