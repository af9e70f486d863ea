#!/usr/bin/env bash
# Builds Istio's echo `server` and `client` (istio.io/istio/pkg/test/echo/cmd/{server,client}, the
# app the Gateway API conformance suite's mesh tests run and exec into) from the Go module proxy,
# with the version pinned in hack/istio-echo/go.mod, into
# $KNIT_CACHE/istio-echo/<istio version>-<module hash>-<os>-<arch>/, once per version, together
# with the self-signed certificate the suite's manifests point the server at (--crt/--key).
# Prints that directory. hack/images.sh packs it into the image the suite names.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$HACK_DIR/istio-echo"
V=$(cd "$SRC" && go list -m -f '{{.Version}}' istio.io/istio) || die "hack/istio-echo does not name istio.io/istio"
H=$({ cd "$SRC" && sha256sum go.mod go.sum; } | sha256sum | cut -c1-12)
OUT="$KNIT_CACHE/istio-echo/$V-$H-$GOOS_HOST-$GOARCH_HOST"

build() {
  if [[ -x $OUT/server && -x $OUT/client && -f $OUT/cert.crt && -f $OUT/cert.key ]]; then return 0; fi
  log "building Istio's echo server and client ($V) into $OUT (cold: ~30 s of compile on idle cores)"
  (cd "$SRC" && go build -trimpath -ldflags "-s -w" -o "$OUT/tmp/" \
    istio.io/istio/pkg/test/echo/cmd/server istio.io/istio/pkg/test/echo/cmd/client) ||
    die "building Istio's echo app failed"
  # A throwaway certificate for the echo server's TLS port (the suite never checks it). The key
  # is world-readable because the image runs as a non-root user; it protects nothing.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=echo" -addext "subjectAltName=DNS:echo,DNS:*.gateway-conformance-mesh.svc.cluster.local" \
    -keyout "$OUT/tmp/cert.key" -out "$OUT/tmp/cert.crt" 2>/dev/null || die "openssl could not make the echo certificate"
  chmod 0644 "$OUT/tmp/cert.key" "$OUT/tmp/cert.crt"
  mv -f "$OUT"/tmp/{server,client,cert.crt,cert.key} "$OUT/"
  rmdir "$OUT/tmp"
}
with_lock "$OUT" build
echo "$OUT"
