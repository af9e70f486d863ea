#!/usr/bin/env bash
# hack/cluster/install.sh [cert-manager|operator|sample|all]: installs into the local cluster as
# a user would — cert-manager from its own manifests (its CRDs from the module, then
# config/cert-manager: controller, webhook, cainjector), the operator from config/default
# (kubectl's built-in kustomize), the sample Mesh — after `make images` has imported every image.
# Idempotent: applying again changes nothing that is already right.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
source "$HACK_DIR/cluster/env.sh"
cd "$REPO_ROOT"
what=${1:-all}
CM_DIR=$(cert_manager_dir)

wait_for() { # wait_for WHAT TIMEOUT CMD...
  local what=$1 timeout=$2 t=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - t < timeout )) || { log "error: $what not ready after ${timeout}s"; return 1; }
    sleep 1
  done
  log "$what ready ($((SECONDS - t))s)"
}

# The webhook really answers (CA injected by cainjector, endpoints up): a server-side dry-run of an
# Issuer goes through cert-manager's validating webhook.
webhook_serves() {
  kubectl_ create --dry-run=server -f - <<'YAML'
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: knit-webhook-probe, namespace: default}
spec: {selfSigned: {}}
YAML
}

# webhook_diagnostics prints why the webhook does not answer: the API server's error, whether the
# caBundle cainjector injected is the CA in the webhook's Secret, and the two pods' last lines.
webhook_diagnostics() {
  log "the API server's answer:"; webhook_serves 2>&1 | tail -3 >&2 || true
  local injected secret
  injected=$(kubectl_ get validatingwebhookconfiguration cert-manager-webhook -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null | sha256sum | cut -c1-12)
  secret=$(kubectl_ -n cert-manager get secret cert-manager-webhook-ca -o jsonpath='{.data.ca\.crt}' 2>/dev/null | sha256sum | cut -c1-12)
  log "caBundle injected: sha256 $injected; Secret cert-manager-webhook-ca ca.crt: sha256 $secret"
  local d
  for d in cert-manager-cainjector cert-manager-webhook; do
    log "deployment/$d, last lines:"; kubectl_ -n cert-manager logs "deployment/$d" --tail=15 >&2 2>&1 || true
  done
}

cert_manager() {
  "$HACK_DIR/build-cert-manager.sh"
  kubectl_ apply --server-side --force-conflicts -f "$CM_DIR/crds/" >/dev/null || die "applying cert-manager CRDs failed"
  kubectl_ wait --for condition=Established --timeout=60s crd -l app.kubernetes.io/name=cert-manager >/dev/null 2>&1 ||
    kubectl_ wait --for condition=Established --timeout=60s crd/certificates.cert-manager.io crd/issuers.cert-manager.io \
      crd/clusterissuers.cert-manager.io crd/certificaterequests.cert-manager.io >/dev/null
  "$HACK_DIR/cluster/apply.sh" config/cert-manager
  local d
  for d in cert-manager cert-manager-webhook cert-manager-cainjector; do
    wait_for "deployment $d" 240 kubectl_ -n cert-manager rollout status "deployment/$d" --timeout=5s ||
      { kubectl_ -n cert-manager get pods -o wide; die "cert-manager did not come up"; }
  done
  if ! wait_for "cert-manager webhook" 120 webhook_serves; then
    # Seen once (2026-12-02, CI): the API server refused the webhook's certificate ("signed by
    # unknown authority") for minutes while all three pods ran. Say why, then do what an admin
    # would: restart cainjector and the webhook once, so the CA is injected afresh.
    webhook_diagnostics
    log "restarting cert-manager's cainjector and webhook once"
    kubectl_ -n cert-manager rollout restart deployment/cert-manager-cainjector deployment/cert-manager-webhook >/dev/null
    for d in cert-manager-webhook cert-manager-cainjector; do
      wait_for "deployment $d (restarted)" 120 kubectl_ -n cert-manager rollout status "deployment/$d" --timeout=5s || true
    done
    wait_for "cert-manager webhook (after a restart)" 120 webhook_serves ||
      { webhook_diagnostics; die "cert-manager's webhook does not answer"; }
  fi
}

operator() {
  "$HACK_DIR/cluster/apply.sh" config/default
  wait_for "operator (knit-operator/knit-controller-manager)" 240 \
    kubectl_ -n knit-operator rollout status deployment/knit-controller-manager --timeout=5s ||
    { kubectl_ -n knit-operator get pods -o wide; kubectl_ -n knit-operator logs deploy/knit-controller-manager --tail=50 || true; die "the operator did not come up"; }
}

sample() {
  kubectl_ apply -k config/samples >/dev/null || die "applying config/samples failed"
  log "applied config/samples (Mesh default)"
}

case $what in
  cert-manager) cert_manager ;;
  operator) operator ;;
  sample) sample ;;
  all) cert_manager; operator; sample ;;
  *) die "usage: $0 [cert-manager|operator|sample|all]" ;;
esac
