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

package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshName is the only name a Mesh may have: the mesh is a cluster singleton.
const MeshName = "default"

// MeshSpec is the desired state of the whole mesh: which release runs, how it is upgraded, how
// workloads get identities, and how proxies are injected and observed.
type MeshSpec struct {
	// version is the mesh release to run (control plane and proxy images), such as "v0.1.0".
	// The operator knows which releases it supports and the legal upgrade paths between them;
	// an unsupported version is reported in status, not silently ignored.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^v[0-9]+\\\\.[0-9]+\\\\.[0-9]+(-[0-9A-Za-z.-]+)?$')",message="version must be a release such as v0.1.0 (v<major>.<minor>.<patch>, optionally -<prerelease>)"
	Version string `json:"version"`

	// upgrade controls how a change of version is rolled out. RevisionBased (default): the new
	// version runs as a new MeshRevision beside the old one; once it serves, meshed workloads are
	// restarted onto it batchSize at a time, and the old revision is removed when no pod uses it.
	// InPlace: the one revision's control plane is replaced; proxies move when their pods restart.
	// +optional
	// +kubebuilder:default={}
	Upgrade UpgradeSpec `json:"upgrade,omitzero"`

	// trust configures workload identity: the trust domain and where certificates come from.
	// +optional
	// +kubebuilder:default={}
	Trust TrustSpec `json:"trust,omitzero"`

	// mtls configures mutual TLS between proxies.
	// +optional
	// +kubebuilder:default={}
	MTLS MTLSSpec `json:"mtls,omitzero"`

	// injection configures the sidecar-injection webhook and the injected proxy.
	// +optional
	// +kubebuilder:default={}
	Injection InjectionSpec `json:"injection,omitzero"`

	// gateways are ingress gateways the operator runs. Each entry is shorthand for a Gateway API
	// Gateway of class "knit" named after it, which the Mesh owns: one listener per port
	// (accepting routes from every namespace) and a parameters ConfigMap
	// "<name>-knit-parameters" with replicas, serviceType and resources. The Gateway is run like
	// any Gateway of class knit (a knit-proxy Deployment "<name>-knit" with its Service,
	// ServiceAccount and PodDisruptionBudget); attach HTTPRoutes to it by name. Changing an
	// entry changes the Gateway; removing it deletes the Gateway. Only HTTP ports are served
	// today: HTTPS, TLS and TCP listeners are refused (UnsupportedProtocol in the Gateway's
	// status). Status condition GatewaysReady names any Gateway that is not Programmed.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Gateways []GatewaySpec `json:"gateways,omitempty"`

	// observability configures metrics, access logs and tracing of every proxy.
	// +optional
	// +kubebuilder:default={}
	Observability ObservabilitySpec `json:"observability,omitzero"`

	// controlPlane configures the control-plane Deployment of each revision.
	// +optional
	// +kubebuilder:default={}
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitzero"`
}

// UpgradeStrategy says how workloads move to a new mesh version.
// +kubebuilder:validation:Enum=RevisionBased;InPlace
type UpgradeStrategy string

const (
	// UpgradeRevisionBased runs the new version as a new MeshRevision beside the old one and
	// moves workloads over in batches; the old revision is removed when nothing uses it.
	UpgradeRevisionBased UpgradeStrategy = "RevisionBased"
	// UpgradeInPlace replaces the control plane of the single revision; proxies pick up the new
	// version when their pods are next restarted.
	UpgradeInPlace UpgradeStrategy = "InPlace"
)

// UpgradeSpec controls how a change of spec.version is rolled out.
type UpgradeSpec struct {
	// strategy is RevisionBased (default: the new version runs beside the old one until every
	// workload has moved) or InPlace (the active revision's control-plane Deployment is replaced
	// by a rolling update and keeps its name; running proxies stay on their version until their
	// pods restart, and the DataPlaneSkew condition says how many are behind).
	// +optional
	// +kubebuilder:default=RevisionBased
	Strategy UpgradeStrategy `json:"strategy,omitempty"`

	// batchSize is how many meshed workloads (Deployments, StatefulSets, DaemonSets) are
	// restarted onto the new revision at a time (RevisionBased), as `kubectl rollout restart`
	// does; the next batch starts when every workload of the current one is available again.
	// A workload whose PodDisruptionBudget allows no disruption, or whose own rollout has not
	// finished, is skipped and named in status.upgrade; one pinned with knit.dev/rev is not moved.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	BatchSize int32 `json:"batchSize,omitempty"`

	// paused stops moving workloads after the current batch; both revisions keep serving.
	// Setting it back to false resumes.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// TrustSpec configures workload identity and the certificates that carry it.
// +kubebuilder:validation:XValidation:rule="!has(self.workloadCertRenewBefore) || !has(self.workloadCertDuration) || duration(self.workloadCertRenewBefore) < duration(self.workloadCertDuration)",message="trust.workloadCertRenewBefore must be shorter than trust.workloadCertDuration",fieldPath=".workloadCertRenewBefore"
type TrustSpec struct {
	// trustDomain is the SPIFFE trust domain of workload identities
	// (spiffe://<trustDomain>/ns/<namespace>/sa/<serviceaccount>). It cannot be changed once set:
	// every identity in the mesh would change with it.
	// +optional
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$')",message="trust.trustDomain must be a lowercase DNS name such as cluster.local"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="trust.trustDomain is immutable: changing it would change every workload identity; create the mesh anew instead"
	TrustDomain string `json:"trustDomain,omitempty"`

	// issuerRef names a cert-manager Issuer or ClusterIssuer that signs workload certificates.
	// An Issuer must live in the control-plane namespace. When empty, the operator bootstraps a
	// self-signed root CA through cert-manager.
	// +optional
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`

	// workloadCertDuration is the lifetime of workload certificates; between 1h and 2160h (90 days).
	// Each sidecar gets its certificate (SPIFFE ID spiffe://<trustDomain>/ns/<ns>/sa/<sa>) from
	// the control plane, which has cert-manager sign it with this lifetime; a change applies to
	// the next certificate each proxy gets.
	// +optional
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h') && duration(self) <= duration('2160h')",message="trust.workloadCertDuration must be between 1h and 2160h (90 days)"
	WorkloadCertDuration metav1.Duration `json:"workloadCertDuration,omitzero"`

	// workloadCertRenewBefore is how long before expiry a workload certificate is renewed;
	// at least 5m and shorter than workloadCertDuration. Proxies learn it with each certificate,
	// so a change applies from their next renewal without a restart.
	// +optional
	// +kubebuilder:default="8h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m')",message="trust.workloadCertRenewBefore must be at least 5m"
	WorkloadCertRenewBefore metav1.Duration `json:"workloadCertRenewBefore,omitzero"`
}

// IssuerKind is the kind of a cert-manager issuer.
// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
type IssuerKind string

const (
	// IssuerKindIssuer is a namespaced cert-manager Issuer.
	IssuerKindIssuer IssuerKind = "Issuer"
	// IssuerKindClusterIssuer is a cluster-scoped cert-manager ClusterIssuer.
	IssuerKindClusterIssuer IssuerKind = "ClusterIssuer"
)

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// name of the Issuer or ClusterIssuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// kind is Issuer or ClusterIssuer.
	// +optional
	// +kubebuilder:default=ClusterIssuer
	Kind IssuerKind `json:"kind,omitempty"`

	// group of the issuer; cert-manager.io, or the group of an external issuer.
	// +optional
	// +kubebuilder:default="cert-manager.io"
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`
}

// MTLSMode says whether proxies accept plaintext from workloads outside the mesh.
// +kubebuilder:validation:Enum=STRICT;PERMISSIVE
type MTLSMode string

const (
	// MTLSStrict accepts only mutual-TLS traffic from other proxies on inbound.
	MTLSStrict MTLSMode = "STRICT"
	// MTLSPermissive accepts mutual TLS and plaintext on inbound (for migrations).
	MTLSPermissive MTLSMode = "PERMISSIVE"
)

// MTLSSpec configures mutual TLS between proxies.
type MTLSSpec struct {
	// mode is PERMISSIVE (default) or STRICT. Sidecars always send mutual TLS to endpoints that
	// discovery marks as meshed, checking each peer's SPIFFE ID, and their inbound side accepts
	// it (telling the app the caller's SPIFFE ID in x-knit-peer-identity). Under PERMISSIVE the
	// inbound side also accepts plaintext, and a sidecar that holds no valid certificate yet
	// speaks plaintext to meshed endpoints; under STRICT both are refused. Pods take the mode
	// they were started with.
	// +optional
	// +kubebuilder:default=PERMISSIVE
	Mode MTLSMode `json:"mode,omitempty"`
}

// LogLevel is a proxy log level.
// +kubebuilder:validation:Enum=debug;info;warn;error
type LogLevel string

// FailurePolicy mirrors admissionregistration's failure policy for the injection webhook.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

const (
	// FailurePolicyFail refuses pod creation in meshed namespaces while injection is down.
	FailurePolicyFail FailurePolicy = "Fail"
	// FailurePolicyIgnore admits pods uninjected while injection is down.
	FailurePolicyIgnore FailurePolicy = "Ignore"
)

// InjectionSpec configures sidecar injection and the injected proxy.
type InjectionSpec struct {
	// namespaceSelector selects namespaces whose pods get the proxy, in addition to namespaces
	// labelled knit.dev/inject=enabled. It cannot mesh the namespaces listed in
	// status.excludedNamespaces (kube-system, kube-public, kube-node-lease, the control plane's,
	// the operator's and cert-manager's): even an empty selector ({}, every namespace) skips
	// them, so injection never depends on itself.
	// Removing it removes its webhook: pods created afterwards in namespaces it selected start
	// without a proxy.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// failurePolicy is what the API server does with a pod when the injection webhook cannot be
	// reached: Fail (default: the pod is refused, so no workload runs unmeshed) or Ignore.
	// +optional
	// +kubebuilder:default=Fail
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// proxyResources are the compute resources of the injected proxy container; pods may
	// override them with annotations.
	// +optional
	// +kubebuilder:default={requests: {cpu: "10m", memory: "32Mi"}, limits: {memory: "128Mi"}}
	ProxyResources corev1.ResourceRequirements `json:"proxyResources,omitzero"`

	// proxyLogLevel is the log level of injected proxies; pods may override it with an annotation.
	// +optional
	// +kubebuilder:default=info
	ProxyLogLevel LogLevel `json:"proxyLogLevel,omitempty"`
}

// GatewayServiceType is the type of a gateway's Service.
// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
type GatewayServiceType string

// GatewaySpec is an ingress gateway: a Deployment of knit-proxy and its Service.
type GatewaySpec struct {
	// name of the Gateway; its Deployment and Service are named "<name>-knit".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",message="gateways[].name must be a DNS label: lowercase letters, digits and '-'"
	Name string `json:"name"`

	// namespace the gateway runs in; it cannot be changed once set.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",message="gateways[].namespace must be a DNS label: lowercase letters, digits and '-'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="gateways[].namespace is immutable: remove the gateway and add one with a new name instead"
	Namespace string `json:"namespace"`

	// replicas of the gateway Deployment.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Replicas int32 `json:"replicas,omitempty"`

	// serviceType of the gateway Service.
	// +optional
	// +kubebuilder:default=LoadBalancer
	ServiceType GatewayServiceType `json:"serviceType,omitempty"`

	// ports the gateway listens on.
	// +required
	// +listType=map
	// +listMapKey=port
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Ports []GatewayPort `json:"ports"`

	// resources of the gateway proxy container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
}

// GatewayProtocol is what a gateway port speaks.
// +kubebuilder:validation:Enum=HTTP;HTTPS;TCP;TLS
type GatewayProtocol string

// GatewayPort is one listening port of a gateway.
type GatewayPort struct {
	// name of the port: the Gateway listener's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	Name string `json:"name"`

	// port the gateway Service exposes.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// protocol spoken on the port.
	// +optional
	// +kubebuilder:default=HTTP
	Protocol GatewayProtocol `json:"protocol,omitempty"`
}

// AccessLogFormat is the format of proxy access logs.
// +kubebuilder:validation:Enum=Off;JSON;Text
type AccessLogFormat string

// ObservabilitySpec configures what every proxy reports.
// +kubebuilder:validation:XValidation:rule="!has(self.tracing) || self.tracing.samplingPercent == 0 || (has(self.tracing.endpoint) && size(self.tracing.endpoint) > 0)",message="observability.tracing.endpoint is required when observability.tracing.samplingPercent is above 0",fieldPath=".tracing.endpoint"
type ObservabilitySpec struct {
	// metrics configures the Prometheus endpoint of proxies.
	// +optional
	// +kubebuilder:default={}
	Metrics MetricsSpec `json:"metrics,omitzero"`

	// accessLogFormat is Off (default), JSON or Text: one line per request.
	// +optional
	// +kubebuilder:default=Off
	AccessLogFormat AccessLogFormat `json:"accessLogFormat,omitempty"`

	// tracing exports one span per proxied request over OTLP/gRPC (W3C trace context; a trace
	// the caller sampled is always continued). Pods started after a change pick it up.
	// +optional
	Tracing *TracingSpec `json:"tracing,omitempty"`
}

// MetricsSpec configures the Prometheus endpoint of proxies.
type MetricsSpec struct {
	// enabled serves /metrics on the proxy admin port (15020); false serves none. Pods started
	// after a change pick it up.
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`
}

// TracingSpec configures span export.
type TracingSpec struct {
	// endpoint is the OTLP/gRPC collector address as host:port.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="size(self) == 0 || self.matches('^[A-Za-z0-9.-]+:[0-9]{1,5}$')",message="observability.tracing.endpoint must be host:port, such as otel-collector.observability:4317"
	Endpoint string `json:"endpoint,omitempty"`

	// samplingPercent is the share of new traces that are sampled, 0 to 100.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	SamplingPercent int32 `json:"samplingPercent"`
}

// ControlPlaneSpec configures the control-plane Deployment of each revision.
type ControlPlaneSpec struct {
	// namespace the control plane runs in; it cannot be changed once set.
	// +optional
	// +kubebuilder:default="knit-system"
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([a-z0-9-]*[a-z0-9])?$')",message="controlPlane.namespace must be a DNS label: lowercase letters, digits and '-'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="controlPlane.namespace is immutable: the mesh's certificates and revisions live there"
	Namespace string `json:"namespace,omitempty"`

	// replicas of each revision's control plane; two or more keep injection available during
	// node drains. With 1 and injection.failurePolicy Fail, the Mesh's HighlyAvailable
	// condition is False: draining the node of the only control-plane pod refuses pod creation
	// in meshed namespaces until it runs again.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	Replicas int32 `json:"replicas,omitempty"`

	// resources of the control-plane container.
	// +optional
	// +kubebuilder:default={requests: {cpu: "50m", memory: "64Mi"}}
	Resources corev1.ResourceRequirements `json:"resources,omitzero"`
}

// MeshStatus is what the operator observed and did.
type MeshStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the mesh; Ready summarises the others.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// version is the mesh release the mesh runs: set when the first revision is available, and
	// moved by an upgrade only once the old revision is removed (RevisionBased) or the control
	// plane is rolled out (InPlace).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version,omitempty"`

	// desiredVersion is spec.version as last seen by the operator.
	// +optional
	DesiredVersion string `json:"desiredVersion,omitempty"`

	// activeRevision is the MeshRevision that injects new pods in namespaces labelled
	// knit.dev/inject=enabled or selected by spec.injection.namespaceSelector. After a change of
	// spec.version it moves to the new revision only once that revision's control-plane
	// Deployment is Available and its webhook has a ready endpoint; until then the previous
	// revision keeps injecting (the Upgrading condition says why). Its webhook configuration takes
	// the namespaces over moments after this field moves (the previous revision's keeps them until
	// then, so no pod is left uninjected); the Upgrading condition says so while it has not.
	// +optional
	ActiveRevision string `json:"activeRevision,omitempty"`

	// trust describes the trust root in use.
	// +optional
	Trust *TrustStatus `json:"trust,omitempty"`

	// dataPlane counts the meshed pods' proxies: by the mesh version they run (from the pods),
	// and how many are connected to a control plane and run its latest configuration (from the
	// control planes' reports, see MeshRevision status.controlPlanes).
	// +optional
	DataPlane *DataPlaneStatus `json:"dataPlane,omitempty"`

	// upgrade is the progress of moving workloads to the active revision (RevisionBased); empty
	// when no workload has to move.
	// +optional
	Upgrade *UpgradeStatus `json:"upgrade,omitempty"`

	// excludedNamespaces are never meshed, whatever their labels or
	// spec.injection.namespaceSelector say: kube-system, kube-public, kube-node-lease, the
	// control plane's, the operator's, and cert-manager's (the namespace of its controller
	// Deployment). Their pods are never sent to the injection webhook and they get no trust
	// bundle, so a broad selector cannot stop cert-manager or the control plane from restarting.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
}

// DataPlaneStatus counts proxies by version.
type DataPlaneStatus struct {
	// proxies is the number of meshed pods (pods with an injected knit-proxy), finished pods
	// (a completed Job's) left out.
	Proxies int32 `json:"proxies"`

	// versions are the proxies per mesh version, read from each pod's knit.dev/proxy-version
	// annotation (written by the injection webhook of the revision that injected it).
	// +optional
	// +listType=map
	// +listMapKey=version
	// +kubebuilder:validation:MaxItems=32
	Versions []ProxyVersionCount `json:"versions,omitempty"`

	// pinnedWorkloads is the number of meshed workloads pinned to a revision (knit.dev/rev on
	// their namespace or on the workload), which an upgrade does not move.
	// +optional
	PinnedWorkloads int32 `json:"pinnedWorkloads,omitempty"`

	// ready is the number of meshed pods whose Ready condition is True (a new pod's proxy keeps
	// it not Ready until it has a configuration).
	// +optional
	Ready int32 `json:"ready"`

	// connected is the number of proxies with an xDS stream open to a control-plane pod of any
	// revision, as the control-plane pods last reported (within a few seconds; the report of a
	// pod that stopped reporting counts for nothing after ControlPlaneReportExpiry).
	// +optional
	Connected int32 `json:"connected"`

	// upToDate is the number of connected proxies that accepted the latest configuration their
	// control plane sent them and refuse none. A proxy connected to no control plane is never
	// up to date.
	// +optional
	UpToDate int32 `json:"upToDate"`

	// rejecting is the number of connected proxies that refused (NACK) their latest
	// configuration of some resource type; they keep the one they accepted before. The
	// DataPlaneConfigured condition names one of them.
	// +optional
	Rejecting int32 `json:"rejecting"`
}

// ProxyVersionCount is how many proxies run one mesh version.
type ProxyVersionCount struct {
	// version of the proxies.
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`
	// proxies running it.
	Proxies int32 `json:"proxies"`
}

// UpgradeStatus is the progress of a RevisionBased upgrade (or rollback).
type UpgradeStatus struct {
	// targetRevision is the MeshRevision workloads move to.
	TargetRevision string `json:"targetRevision"`

	// batch is the number of batches started towards targetRevision.
	// +optional
	Batch int32 `json:"batch,omitempty"`

	// workloads is the number of meshed workloads that move (pinned ones excluded); moved is how
	// many of them run targetRevision's proxy in every pod.
	Workloads int32 `json:"workloads"`
	Moved     int32 `json:"moved"`

	// inProgress are the workloads of the current batch that are not available again yet
	// ("deploy/web in ns shop").
	// +optional
	// +kubebuilder:validation:MaxItems=100
	InProgress []string `json:"inProgress,omitempty"`

	// blockedByPDB are workloads not restarted because a PodDisruptionBudget of theirs allows no
	// disruption now; they are tried again once it does.
	// +optional
	// +kubebuilder:validation:MaxItems=100
	BlockedByPDB []string `json:"blockedByPDB,omitempty"`

	// stuck are workloads not restarted because their own rollout has not finished (a
	// Deployment past its progress deadline, or one still rolling out a change of its own).
	// +optional
	// +kubebuilder:validation:MaxItems=100
	Stuck []string `json:"stuck,omitempty"`
}

// TrustStatus describes the trust root.
type TrustStatus struct {
	// rootNotAfter is the expiry of the trust root certificate.
	// +optional
	RootNotAfter *metav1.Time `json:"rootNotAfter,omitempty"`
	// rootFingerprint is the SHA-256 fingerprint of the trust root certificate.
	// +optional
	RootFingerprint string `json:"rootFingerprint,omitempty"`
}

// Mesh is the one resource a cluster admin creates to run knit. It is a cluster singleton named
// "default"; the operator reconciles the control plane, injection, certificates, gateways and
// upgrades from it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="Mesh is a cluster singleton: its name must be 'default'"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.version) || self.spec.version == oldSelf.spec.version || self.spec.version == oldSelf.status.version || (self.spec.version.split('.')[0] == oldSelf.status.version.split('.')[0] && int(self.spec.version.split('.')[1]) - int(oldSelf.status.version.split('.')[1]) <= 1 && int(oldSelf.status.version.split('.')[1]) - int(self.spec.version.split('.')[1]) <= 1)",messageExpression="'spec.version ' + self.spec.version + ' is more than one minor release away from the running ' + oldSelf.status.version + ' (status.version): upgrade one minor release at a time, waiting until status.version shows each, or roll back only to the previous release'"
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.version`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Upgrading",type=string,JSONPath=`.status.conditions[?(@.type=="Upgrading")].status`
// +kubebuilder:printcolumn:name="Proxies",type=integer,JSONPath=`.status.dataPlane.proxies`
// +kubebuilder:printcolumn:name="Connected",type=integer,JSONPath=`.status.dataPlane.connected`
// +kubebuilder:printcolumn:name="Up-To-Date",type=integer,JSONPath=`.status.dataPlane.upToDate`
// +kubebuilder:printcolumn:name="Generation",type=integer,JSONPath=`.metadata.generation`
// +kubebuilder:printcolumn:name="Observed",type=integer,JSONPath=`.status.observedGeneration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
type Mesh struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec MeshSpec `json:"spec"`

	// +optional
	Status MeshStatus `json:"status,omitzero"`
}

// MeshList is a list of Mesh.
// +kubebuilder:object:root=true
type MeshList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []Mesh `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Mesh{}, &MeshList{})
}
