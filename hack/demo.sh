#!/usr/bin/env bash
# make demo: a real local cluster (hack/cluster-up.sh), knit's and cert-manager's images
# (hack/images.sh), cert-manager and the operator installed as a user would
# (hack/cluster/install.sh), the sample Mesh; then what a person looks at.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$HACK_DIR/cluster/env.sh"
T0=$SECONDS
"$HACK_DIR/cluster-up.sh"
"$HACK_DIR/images.sh"
"$HACK_DIR/cluster/install.sh" all
# Give the operator time to bring the mesh up (control plane, certificates); show it either way.
ready=""
for _ in $(seq 1 ${KNIT_DEMO_WAIT:-150}); do
  ready=$(kubectl_ get mesh default -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)
  [[ $ready == True ]] && break
  sleep 1
done
log "Mesh default Ready=${ready:-unknown}"
log "demo ready in $((SECONDS - T0))s"
echo
echo "\$ kubectl get mesh"; kubectl_ get mesh
echo
echo "\$ kubectl describe mesh default"; kubectl_ describe mesh default
echo
echo "\$ kubectl get pods -A -o wide"; kubectl_ get pods -A -o wide
echo
echo "The cluster keeps running. Use it with:  export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "(kubectl is $KUBE_BIN/kubectl; bin/k8s/kubectl after make tools). Stop it all with: make cluster-down"
echo "Meshed sample workloads (init container, probes, Job, StatefulSet; README, \"Try the mesh\"):"
echo "  kubectl apply -f config/samples/workloads/demo.yaml && kubectl -n knit-demo get pods,jobs"
