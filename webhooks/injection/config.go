/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package injection decides what joining the mesh adds to a pod: the knit-proxy sidecar, the
// init container that captures its traffic, the identity token and trust bundle it needs, and
// probes rerouted so the kubelet still reaches the app through the capture. Pure logic: the
// admission webhook (package webhooks) calls it with the pod the API server sent.
package injection

import corev1 "k8s.io/api/core/v1"

// Annotations (and the one label) a pod may carry to steer injection, and those injection writes.
const (
	// AnnotationInject set to "false" (or the label of the same name) keeps a pod out of the mesh;
	// "true" is the default. Any other value refuses the pod, naming the two.
	AnnotationInject = "knit.dev/inject"
	InjectTrue       = "true"
	InjectFalse      = "false"

	AnnotationProxyCPU         = "knit.dev/proxy-cpu"
	AnnotationProxyMemory      = "knit.dev/proxy-memory"
	AnnotationProxyCPULimit    = "knit.dev/proxy-cpu-limit"
	AnnotationProxyMemoryLimit = "knit.dev/proxy-memory-limit"
	AnnotationProxyLogLevel    = "knit.dev/proxy-log-level"
	// Comma-separated ports or CIDRs the capture leaves alone.
	AnnotationExcludeInboundPorts  = "knit.dev/exclude-inbound-ports"
	AnnotationExcludeOutboundPorts = "knit.dev/exclude-outbound-ports"
	AnnotationExcludeOutboundCIDRs = "knit.dev/exclude-outbound-cidrs"

	// Written by injection.
	AnnotationInjectedRevision = "knit.dev/injected-revision"
	AnnotationProxyVersion     = "knit.dev/proxy-version"
)

// Container, volume and port names and numbers of the injected proxy.
const (
	ProxyContainerName = "knit-proxy"
	InitContainerName  = "knit-init"
	TokenVolumeName    = "knit-token"
	TrustVolumeName    = "knit-trust-bundle"
	TokenMountPath     = "/var/run/secrets/knit"
	TrustMountPath     = "/etc/knit/trust"
	// TokenAudience is the audience of the projected ServiceAccount token the proxy presents to
	// the identity server; tokens for the API server are not accepted there.
	TokenAudience = "knit.dev"

	// ProxyUID is the proxy's UID, the same in every pod: the capture leaves its traffic alone,
	// so a pod with another container running as it is refused rather than given another UID.
	ProxyUID  int64 = 1337
	AdminPort int32 = 15020
	// LocalAdminPort is the proxy's full admin port, on 127.0.0.1 only (/config, pprof, the
	// preStop hook's POST /drain).
	LocalAdminPort  int32 = 15000
	InboundPort     int32 = 15006
	OutboundPort    int32 = 15001
	tokenExpirySecs int64 = 3600
	appHealthPrefix       = "/app-health/"
	// TrustBundleName is the ConfigMap, in the pod's namespace, that the proxy mounts: the
	// operator writes it into every meshed namespace.
	TrustBundleName = "knit-trust-bundle"
	// TrustBundleKey is the key of the PEM roots in that ConfigMap.
	TrustBundleKey = "ca.crt"
)

// Config is what the mesh says about injected proxies, for one revision.
type Config struct {
	Revision     string
	ProxyImage   string
	ProxyVersion string
	TrustDomain  string
	// ControlPlane is host:port of the revision's xDS and identity servers.
	ControlPlane    string
	Resources       corev1.ResourceRequirements
	LogLevel        string
	AccessLogFormat string
	// MTLSMode is the Mesh's mtls.mode (STRICT or PERMISSIVE), given to the proxy as
	// KNIT_MTLS_MODE; a pod keeps the mode it started with.
	MTLSMode string
	// TracingEndpoint is the OTLP/gRPC collector (host:port) proxies export spans to, with
	// TracingSamplingPercent of new traces sampled; empty exports nothing.
	TracingEndpoint        string
	TracingSamplingPercent int32
	// MetricsDisabled: proxies serve no /metrics (observability.metrics.enabled false).
	MetricsDisabled bool
}
