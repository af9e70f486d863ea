#!/usr/bin/env bash
# make images: builds every image the local cluster runs, as static binaries in single-layer
# images (go-containerregistry, hack/images), and imports them into the cluster's containerd.
#   hack/images.sh                 all images; imported when the cluster's containerd runs
#   hack/images.sh --import NAME…  only these (names as in config/images/kustomization.yaml, or
#                                  conformance-echo: see below)
#   hack/images.sh --refs          prints NAME_IMAGE=reference lines for `eval`
# References and tags come from ONE place, config/images/kustomization.yaml (a kustomize
# Component the manifests include). No Docker, no registry: tarballs go to bin/images/ and into
# containerd with `ctr images import`. Third-party binaries (cert-manager's three, CoreDNS) are
# built from the Go module proxy once per version and cached under $KNIT_CACHE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"

OUT="$REPO_ROOT/bin/images"
TOOL="$OUT/knit-images"
COMPONENT="$REPO_ROOT/config/images/kustomization.yaml"
CM_DIR=$(cert_manager_dir)
ALL=(pause coredns e2e-probe toolbox controller cert-manager-controller cert-manager-webhook cert-manager-cainjector mesh)
# `toolbox`: a shell for people's own workloads on a cluster that pulls nothing (README, "Try
# the mesh"): Debian's busybox-static as /bin/sh and /bin/busybox (its shell runs every applet,
# sleep, nc, hostname..., without a PATH lookup; its wget crashes) and the probe tool as /bin/probe (HTTP).
# `mesh`: the mesh's own images, per supported mesh version, named by the operator's
# internal/versions/versions.yaml (the operator puts those references into the Deployments it makes).
# `conformance-echo` (not in ALL: only `make conformance` needs it): Istio's echo server and
# client (hack/build-istio-echo.sh), the app the Gateway API conformance suite's mesh tests run,
# tagged with exactly the reference the suite's mesh manifests name.
# `conformance-gateway` (also only for `make conformance`): the images the suite's gateway
# manifests (base/manifests.yaml) name, none pulled: echo-basic, built from the conformance module
# test/conformance pins, under each echo-basic reference there; and the pause binary under the
# suite's CoreDNS reference: that pod is a UDP backend only UDPRoute tests use (knit claims none),
# but the suite waits for it to run, and its Corefile forwards to public resolvers, which nothing
# on this machine may reach.
VERSIONS="$REPO_ROOT/internal/versions/versions.yaml"

tool() {
  mkdir -p "$OUT"
  # Under bin/'s lock: hack/bundle.sh builds the same tool (make test beside make e2e in .ci/run).
  build_tool() { (cd "$HACK_DIR/images" && go build -o "$TOOL" .) || die "building hack/images failed"; }
  with_lock "$REPO_ROOT/bin" build_tool
}

refs() { "$TOOL" refs -component "$COMPONENT" | sed 's/^\([A-Z_0-9]*\)=/\1_IMAGE=/'; }

# src_hash DIR EXTRA: sha256 over a module's sources, for rebuild stamps.
src_hash() {
  { (cd "$1" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); echo "$2"; } |
    sha256sum | cut -d' ' -f1
}

# cached_build DIR PKG BIN LDFLAGS: go build of a nested module's main into BIN unless its stamp matches.
cached_build() {
  local dir=$1 pkg=$2 bin=$3 ldflags=$4 hash
  hash=$(src_hash "$dir" "$ldflags")
  if [[ -x $bin && -f $bin.sha256 && $(<"$bin.sha256") == "$hash" ]]; then return; fi
  log "building $(basename "$bin") from $dir (cold: minutes; cached per version afterwards)"
  mkdir -p "$(dirname "$bin")"
  (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" "$pkg") || die "build of $bin failed"
  mv -f "$bin.tmp" "$bin"
  echo "$hash" >"$bin.sha256"
}

# binary NAME [VERSION]: prints "path entrypoint user" of the binary for image NAME, building it
# if needed; VERSION is the mesh release of proxy and controlplane.
binary() {
  local ld="-s -w"
  case $1 in
    pause)
      go build -C "$HACK_DIR/images" -trimpath -ldflags "$ld" -o "$OUT/bin/pause" ./pause || die "pause build failed"
      echo "$OUT/bin/pause /pause 65535:65535" ;;
    e2e-probe)
      go build -C "$HACK_DIR/images" -trimpath -ldflags "$ld" -o "$OUT/bin/probe" ./probe || die "probe build failed"
      echo "$OUT/bin/probe /probe 65532:65532" ;;
    toolbox)
      busybox_static >&2
      go build -C "$HACK_DIR/images" -trimpath -ldflags "$ld" -o "$OUT/bin/probe" ./probe || die "probe build failed"
      echo "/bin/busybox /bin/sh 65532:65532" ;;
    controller)
      # The operator release of this tree (the CSV version of bundle/), logged at start.
      go build -ldflags "$ld -X github.com/knit-mesh/knit/internal/buildinfo.Version=v$KNIT_VERSION" -o "$OUT/bin/manager" ./cmd/manager ||
        die "manager build failed"
      echo "$OUT/bin/manager /manager 65532:65532" ;;
    proxy | controlplane)
      # One build per mesh release: the same tree, told its release at link time, so the two
      # releases are distinguishable (knit-proxy reports it on /version and in knit_build_info).
      local v=${2:?mesh version} cmd=knit-$1
      go build -ldflags "$ld -X github.com/knit-mesh/knit/internal/buildinfo.Version=$v" -o "$OUT/bin/$v/$cmd" "./cmd/$cmd" ||
        die "$cmd $v build failed"
      echo "$OUT/bin/$v/$cmd /$cmd 65532:65532" ;;
    coredns)
      local v; v=$(cd "$HACK_DIR/coredns" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
      [[ ":$COREDNS_IMAGE" == *":$v" ]] || die "hack/coredns builds CoreDNS $v but $COMPONENT tags $COREDNS_IMAGE"
      local bin="$KNIT_CACHE/coredns/$v-$GOOS_HOST-$GOARCH_HOST/coredns"
      with_lock "$(dirname "$bin")" cached_build "$HACK_DIR/coredns" . "$bin" "$ld -X github.com/coredns/coredns/coremain.GitCommit=knit"
      echo "$bin /coredns 65532:65532" ;;
    cert-manager-controller)
      "$HACK_DIR/build-cert-manager.sh" >&2
      echo "$CM_DIR/cert-manager-controller /cert-manager-controller 1000:1000" ;;
    cert-manager-webhook | cert-manager-cainjector)
      local bin="$CM_DIR/$1" sub=${1#cert-manager-}
      with_lock "$CM_DIR" cached_build "$HACK_DIR/cert-manager-images" "./$sub" "$bin" \
        "$ld -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$CERT_MANAGER_VERSION"
      echo "$bin /$1 1000:1000" ;;
    conformance-echo)
      local d; d=$("$HACK_DIR/build-istio-echo.sh") || die "building Istio's echo app failed"
      echo "$d/server /usr/local/bin/server 65532:65532" ;;
    echo-basic)
      local v; v=$(cd "$REPO_ROOT/test/conformance" && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api/conformance)
      local bin="$KNIT_CACHE/echo-basic/$v-$GOOS_HOST-$GOARCH_HOST/echo-basic"
      with_lock "$(dirname "$bin")" cached_build "$REPO_ROOT/test/conformance" sigs.k8s.io/gateway-api/conformance/echo-basic "$bin" "$ld"
      echo "$bin /echo-basic 65532:65532" ;;
    *) die "unknown image $1 (known: ${ALL[*]} conformance-echo conformance-gateway)" ;;
  esac
}

# busybox_static: Debian's busybox-static, installed when missing (the toolbox image's shell).
busybox_static() {
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" && return
  log "installing Debian's busybox-static (the toolbox image's shell)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; } ||
    die "apt-get install busybox-static failed"
}

image_ref() { local v=${1//-/_}; v="${v^^}_IMAGE"; echo "${!v}"; }

# conformance_module_dir: where the conformance suite module test/conformance pins is, downloaded
# first (go list -m prints an empty Dir for a module not yet in the module cache: a new machine).
conformance_module_dir() {
  (cd "$REPO_ROOT/test/conformance" && go mod download sigs.k8s.io/gateway-api/conformance &&
    go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api/conformance)
}

# conformance_echo_ref: the one image reference in the conformance suite's mesh manifests (the
# suite module pinned by test/conformance/go.mod). The suite applies those manifests itself, so
# the image must be in containerd under exactly that name (pull policy IfNotPresent).
conformance_echo_ref() {
  local dir refs
  dir=$(conformance_module_dir) ||
    die "cannot locate the conformance suite module (test/conformance/go.mod)"
  refs=$(sed -nE 's/^[[:space:]]*image:[[:space:]]*//p' "$dir/mesh/manifests.yaml" | tr -d "\"'" | sort -u)
  [[ -n $refs && $(wc -l <<<"$refs") == 1 ]] || die "$dir/mesh/manifests.yaml names not exactly one image: ${refs//$'\n'/ }"
  echo "$refs"
}

# conformance_gateway_refs: "REF BINARY" per image the suite's gateway manifests name.
conformance_gateway_refs() {
  local dir ref
  dir=$(conformance_module_dir) ||
    die "cannot locate the conformance suite module (test/conformance/go.mod)"
  while read -r ref; do
    case $ref in
      */gateway-api/echo-basic:*) echo "$ref echo-basic" ;;
      */coredns/coredns:*) echo "$ref pause" ;;
      *) die "$dir/base/manifests.yaml names $ref, which make conformance cannot build" ;;
    esac
  done < <(sed -nE 's/^[[:space:]]*image:[[:space:]]*//p' "$dir/base/manifests.yaml" | tr -d "\"'" | sort -u)
}

check_tags() {
  local n ref
  for n in cert-manager-controller cert-manager-webhook cert-manager-cainjector; do
    ref=$(image_ref $n)
    [[ $ref == *":$CERT_MANAGER_VERSION" ]] || die "$COMPONENT tags $ref but hack/versions.env has CERT_MANAGER_VERSION=$CERT_MANAGER_VERSION"
  done
}

containerd_up() { pid_of containerd >/dev/null && ctr_ version >/dev/null 2>&1; }

# one NAME IMPORT [REF BINARY VERSION]: pack the image tarball (skipped when binary and reference
# are unchanged), and import it into containerd (skipped when containerd already holds exactly
# this tarball). REF defaults to NAME's entry in config/images, BINARY to NAME; VERSION is the
# mesh release a mesh image is built as.
one() {
  local name=$1 import=$2 ref=${3:-} bin=${4:-$1} version=${5:-} path entry user tar sum
  if [[ $name == mesh ]]; then
    local kind r
    while read -r kind r; do
      if [[ $kind == controlplane && ! -d $REPO_ROOT/cmd/knit-controlplane ]]; then
        log "warning: no cmd/knit-controlplane yet: $r is not built (the operator's control-plane pods cannot start)"
        continue
      fi
      one "mesh-$kind-${r##*:}" "$import" "$r" "$kind" "${r##*:}"
    done < <("$TOOL" mesh -versions "$VERSIONS" | sort)
    return
  fi
  if [[ $name == conformance-gateway ]]; then
    local r b i=0
    while read -r r b; do one "conformance-gateway-$((i++))" "$import" "$r" "$b"; done < <(conformance_gateway_refs)
    return
  fi
  if [[ -z $ref && $name == conformance-echo ]]; then ref=$(conformance_echo_ref); fi
  [[ -n $ref ]] || ref=$(image_ref "$name"); [[ -n $ref ]] || die "no $name in $COMPONENT"
  read -r path entry user < <(binary "$bin" "$version")
  [[ -x $path ]] || die "no binary for $name"
  # Extra files: the echo image also carries the client the suite execs (on PATH) and the
  # server's certificate where the suite's manifests point --crt/--key.
  local extra=() files=("$path")
  if [[ $name == conformance-echo ]]; then
    local d; d=$(dirname "$path")
    extra=(-add "$d/client=/usr/local/bin/client" -add "$d/cert.crt=/cert.crt" -add "$d/cert.key=/cert.key" -path /usr/local/bin:/)
    files+=("$d/client" "$d/cert.crt" "$d/cert.key")
  fi
  if [[ $name == toolbox ]]; then
    extra=(-add "$path=/bin/busybox" -add "$OUT/bin/probe=/bin/probe" -path /bin)
    files+=("$OUT/bin/probe")
  fi
  tar="$OUT/$name.tar"
  sum=$( { sha256sum "${files[@]}" | cut -d' ' -f1; echo "$ref $entry $user ${extra[*]}"; } | sha256sum | cut -d' ' -f1)
  if [[ ! -f $tar || ! -f $tar.sum || $(<"$tar.sum") != "$sum" ]]; then
    "$TOOL" pack -ref "$ref" -binary "$path" -entrypoint "$entry" -user "$user" "${extra[@]}" -out "$tar" >/dev/null || die "packing $name failed"
    echo "$sum" >"$tar.sum"
  fi
  [[ $import == yes ]] || { log "image $ref -> $tar"; return; }
  local stamp="$CLUSTER_DIR/containerd/imported/$name"
  if [[ -f $stamp && $(<"$stamp") == "$sum" && -f "$(dirname "$stamp")/by-ref/${ref//[\/:]/_}" && -n $(ctr_ images ls -q "name==$ref" 2>/dev/null) ]]; then
    log "image $ref already in containerd"
    return
  fi
  ctr_ images import "$tar" >/dev/null || die "ctr import of $tar failed"
  [[ -n $(ctr_ images ls -q "name==$ref") ]] || die "$ref not in containerd after import"
  mkdir -p "$(dirname "$stamp")/by-ref"; echo "$sum" >"$stamp"; echo "$sum" >"$(dirname "$stamp")/by-ref/${ref//[\/:]/_}"
  log "image $ref imported"
}

main() {
  tool
  eval "$(refs)"
  if [[ ${1:-} == --refs ]]; then refs; return; fi
  check_tags
  local names=("${ALL[@]}") import=no
  if [[ ${1:-} == --import ]]; then shift; names=("$@"); import=yes; containerd_up || die "containerd of the local cluster is not running (make cluster-up)"; fi
  if [[ $import == no ]] && containerd_up; then import=yes; fi
  local n; for n in "${names[@]}"; do one "$n" "$import"; done
  [[ $import == yes ]] || log "cluster not up: images packed under $OUT but not imported (make cluster-up imports what it needs)"
}

main "$@"
