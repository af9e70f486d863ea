#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the local cluster run, from k8s.io/kubernetes
# through the Go module proxy, into $KNIT_CACHE/k8s/<version>-<os>-<arch>/.
#
# `go install k8s.io/kubernetes/cmd/X@v` is refused because k8s.io/kubernetes replaces its staging
# modules with ./staging paths that its module zip lacks. A throw-away wrapper module that requires
# k8s.io/kubernetes and replaces every staging module with its published version builds fine.
# A binary already present at the pinned version is not rebuilt.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

V=$KUBERNETES_VERSION
COMMANDS=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
OUT="$KNIT_CACHE/k8s/$V-$GOOS_HOST-$GOARCH_HOST"
SRC="$KNIT_CACHE/src/kubernetes-$V"

binary_version() {
  # Capture first, then cut: `kubectl … | head -1` under pipefail fails at random (SIGPIPE when
  # head exits before kubectl's second line), which made the check report kubectl missing.
  local out
  case $1 in
    kubectl) out=$("$OUT/kubectl" version --client 2>/dev/null) || return 1 ;;
    *) out=$("$OUT/$1" --version 2>/dev/null) || return 1 ;;
  esac
  echo "${out%%$'\n'*}"
}

missing() {
  local c
  for c in "${COMMANDS[@]}"; do
    [[ -x "$OUT/$c" && "$(binary_version "$c")" == *"$V" ]] || echo "$c"
  done
}

build() {
  local todo
  todo=$(missing)
  if [[ -z "$todo" ]]; then
    log "kubernetes $V binaries present in $OUT"
    return
  fi
  log "building kubernetes $V: $(echo $todo) (cold: ~15-30 min on 2 cores)"
  mkdir -p "$SRC" "$OUT"
  local moddir
  moddir=$(go mod download -json "k8s.io/kubernetes@$V" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$moddir" ]] || die "k8s.io/kubernetes@$V not in the module cache"

  # Wrapper go.mod: the staging list and go/godebug lines come from upstream's own go.mod.
  local minor=${V#v1.}; minor=${minor%%.*}
  {
    echo "module knit.local/kube-binaries"
    echo
    grep -E '^go [0-9]' "$moddir/go.mod"
    grep -E '^godebug ' "$moddir/go.mod" || true
    echo
    echo "require k8s.io/kubernetes $V"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/\S+ => \./staging/' "$moddir/go.mod" |
      awk -v sv="v0.$minor.${V##*.}" '{print "\t" $1 " => " $1 " " sv}'
    echo ")"
  } >"$SRC/go.mod"

  local pkgs=() c
  for c in $todo; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (
    cd "$SRC"
    go get -tool "${pkgs[@]}" >/dev/null
    local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
    local ld="-s -w"
    for p in $pkg $cpkg; do
      ld+=" -X $p.gitVersion=$V -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    done
    go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$OUT/" "${pkgs[@]}"
  )
  todo=$(missing)
  [[ -z "$todo" ]] || die "built but version check failed for: $todo"
  log "kubernetes $V binaries ready in $OUT"
}

with_lock "$OUT" build
