# knit — a service mesh run by an operator. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

include hack/versions.env
export GOTOOLCHAIN := local

GOOS   := $(shell go env GOOS)
GOARCH := $(shell go env GOARCH)
# Tool builds are cached per user outside the clone (hack/lib.sh); bin/ links to them.
KNIT_CACHE ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/knit
export KNIT_CACHE
KUBE_BIN := $(KNIT_CACHE)/k8s/$(KUBERNETES_VERSION)-$(GOOS)-$(GOARCH)

CONTROLLER_GEN := go tool controller-gen
# Packages that carry kubebuilder markers (the nested tool modules under hack/ are not ours).
GEN_PATHS := ./api/...;./controllers/...;./webhooks/...;./cmd/...

GINKGO_FLAGS ?=

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code from the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: ## Generate CRDs and RBAC from kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="$(GEN_PATHS)" \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## gofmt the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## go vet, gofmt check, and golangci-lint (built from the module proxy, cached).
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	hack/golangci-lint.sh run ./...

##@ Build

.PHONY: build
build: ## Build the binaries into bin/.
	go build -o bin/ ./cmd/...

.PHONY: tools
tools: ## Build (or reuse from the per-user cache) kube-apiserver, etcd, cert-manager and friends; link them under bin/.
	hack/setup-test-binaries.sh

##@ Test

.PHONY: test
test: tools ## Unit + integration tests against a real kube-apiserver, etcd and cert-manager.
	hack/test.sh

.PHONY: check-upstream-copies
check-upstream-copies: ## Fail when a file shares more than six lines with the pinned source of a project knit builds on.
	hack/check-upstream-copies.sh

.PHONY: bundle
bundle: ## Generate the OLM bundle (bundle/: CSV, CRDs, metadata) from config/manifests at KNIT_VERSION (hack/versions.env).
	hack/bundle.sh

.PHONY: verify-bundle
verify-bundle: ## Fail when bundle/ is stale or does not pass operator-framework/api's validators (warnings as errors) and knit's checks.
	hack/verify-bundle.sh

.PHONY: verify-generated
verify-generated: ## Fail when committed generated files differ from what controller-gen makes.
	hack/verify-generated.sh

##@ Run

.PHONY: run
run: tools build ## Start a local API server + etcd + cert-manager, install CRDs, run the manager, apply the sample.
	hack/run-local.sh

.PHONY: clean
clean: ## Remove build output in the clone (the per-user tool cache stays).
	rm -rf bin/ cover.out .run/

##@ Proxy (knit-proxy data plane)

.PHONY: proxy-test
proxy-test: ## Unit and integration tests of knit-proxy (real sockets, -race where concurrency matters; as root also network-namespace tests of capture).
	go test ./proxy/... ./cmd/knit-proxy/...
	go test -race ./proxy/dataplane/... ./proxy/balance/... ./proxy/listener/... ./proxy/retry/... ./proxy/appprobe/... ./proxy/xds/...

.PHONY: proxy-conformance
proxy-conformance: ## h2spec (HTTP/2 conformance) against knit-proxy's h2c and h2 (TLS) listeners; report in proxy/conformance/.
	hack/proxy-conformance.sh

# Go's fuzzer minimizes every new interesting input for up to 60 s by default
# and does not count those runs: parsers with much new coverage early (the
# YAML config) then show 0 execs/s for long stretches. A short run has no use
# for minimal corpus entries, so minimization is capped at 100 runs.
# Go 1.26's coordinator can also fail a run with a bare "context deadline
# exceeded" when -fuzztime ends under CPU contention (go.dev/issue/75804, fixed
# in Go 1.27); that result, with no failing input written, is not a finding.
define fuzz
	out=$$(mktemp); rc=0; \
	go test -run='^$$' -fuzztime=$(or $(FUZZTIME),10s) -fuzzminimizetime=100x -fuzz='^$(1)$$' $(2) 2>&1 | tee $$out || rc=$$?; \
	if [ $$rc -ne 0 ] && ! grep -q 'Failing input written' $$out && grep -qx '    context deadline exceeded' $$out; then \
		echo "$(1): Go's fuzztime shutdown race (go.dev/issue/75804), no failing input: not a finding"; rc=0; fi; \
	rm -f $$out; exit $$rc
endef

.PHONY: fuzz
fuzz: ## Short fuzz runs: protocol detection, proxy config, HTTP/1 writer and reader, proxy vs net/http, the HTTP/1 engine's request and upstream response parsers vs net/http, access log lines, xDS decoding, the injection webhook and patcher, the identity service's request decoding (FUZZTIME=10s).
	$(call fuzz,FuzzDetect,./proxy/detect/)
	$(call fuzz,FuzzParseConfig,./proxy/config/)
	$(call fuzz,FuzzH1WriteRequest,./proxy/upstream/)
	$(call fuzz,FuzzH1ReadResponse,./proxy/upstream/)
	$(call fuzz,FuzzProxyMatchesNetHTTP,./proxy/dataplane/)
	$(call fuzz,FuzzParseHeadMatchesNetHTTP,./proxy/http1/)
	$(call fuzz,FuzzReadResponseHeadMatchesNetHTTP,./proxy/http1/)
	$(call fuzz,FuzzLogJSON,./proxy/accesslog/)
	$(call fuzz,FuzzDecodeAndTranslate,./proxy/xds/)
	$(call fuzz,FuzzInjectionWebhook,./webhooks/)
	$(call fuzz,FuzzPatch,./webhooks/injection/)
	$(call fuzz,FuzzDecodeRequest,./controlplane/identity/)

.PHONY: bench
bench: ## Benchmark knit-proxy vs direct, nginx and haproxy on loopback in every traffic shape and on the mesh path (BENCH_SHAPES selects phases), then instructions per request under callgrind (BENCH_BASELINE=<rev> adds that revision's knit-proxy as a peer); prints ratios, writes bin/bench/result.json and instructions.json.
	hack/bench.sh $(BENCH_ARGS)

.PHONY: bench-controlplane
bench-controlplane: tools ## Benchmark knit-controlplane's xDS server: N simulated proxies, S Services, E endpoints on a real API server; writes bin/bench/controlplane.json.
	go build -o bin/knit-controlplane ./cmd/knit-controlplane
	@echo "| clients | Services | endpoints | p50 ms | p99 ms | initial sync s | CPU s | CPU s in rounds | peak RSS MB | memory limit | reconnects |"
	@echo "|---|---|---|---|---|---|---|---|---|---|---|"
	@for size in $(BENCH_CP_SIZES); do set -- $$(echo $$size | tr , ' '); \
	  KUBEBUILDER_ASSETS=$(CURDIR)/bin/k8s KNIT_TEST_LOGS=$(CURDIR)/bin/bench/logs \
	  go run ./test/bench/controlplane -clients $$1 -services $$2 -endpoints $$3 $(BENCH_CP_ARGS) | tail -1 || exit 1; done

BENCH_CP_SIZES ?= 100,100,1000 1000,1000,10000
# e.g. BENCH_CP_ARGS="-memory-limit=1073741824 -profile=bin/bench/profile"
BENCH_CP_ARGS ?=

.PHONY: run-stop
run-stop: ## Stop what `make run` started.
	hack/run-local.sh stop

##@ Local cluster (real pods: containerd, kubelet; no Docker, no registry)

.PHONY: cluster-up
cluster-up: ## Start a single-node Kubernetes on this machine (root; state under $(KNIT_CACHE)/cluster). Safe to repeat.
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove every process, link, route, mount and rule it made.
	hack/cluster-down.sh

.PHONY: images
images: ## Build knit's, cert-manager's, CoreDNS's and the pause image (go-containerregistry) and import them into the cluster.
	hack/images.sh

.PHONY: olm-up
olm-up: ## Run OLM (built from the module proxy) on the local cluster and import knit's catalog (bundle and catalog images by digest).
	hack/olm.sh

.PHONY: catalog
catalog: ## knit's file-based catalog (two releases in KNIT_CHANNEL, and cert-manager) and its images by digest, imported into the local cluster; CATALOG_ARGS=--offline without a cluster.
	hack/catalog.sh $(CATALOG_ARGS)

.PHONY: demo
demo: ## The main command: local cluster, images, cert-manager, the operator and the sample Mesh; prints the Mesh and the pods.
	hack/demo.sh

.PHONY: conformance
conformance: ## Gateway API conformance suite on the local cluster: mesh profiles (MESH-HTTP, MESH-GRPC) and GATEWAY-HTTP (class knit), strict: 10 consecutive successes; reports in bin/test-reports/ (CONFORMANCE_PUBLISH=1 copies them over the committed ones in test/conformance/reports/). Fails only on a regression against the committed reports. CONFORMANCE_RUNS=mesh|gateway picks one run; CONFORMANCE_ARGS=--run-test=MeshBasic narrows it.
	hack/conformance.sh $(CONFORMANCE_ARGS)

E2E_LABELS ?=
.PHONY: e2e
e2e: tools ## End-to-end suite (Ginkgo) on the local cluster: brings it up, installs, checks, tears it down. E2E_LABELS=network,cluster,dns,install,operator,restart,mesh,injection,discovery,gateway,gateway-mtls,mtls,trustbundle,podsecurity,workloads,upgrade,certmanager,collision,exclusions,deletion,teardown,olm,observability selects (the cluster comes up in the network and cluster specs: include them).
	hack/e2e.sh $(if $(E2E_LABELS),-ginkgo.label-filter='$(E2E_LABELS)')
