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

package translate

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/knit-mesh/knit/webhooks/injection"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key that carries a cluster's
// upstream HTTP version.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Cluster defaults: connect timeout and outlier detection knit applies to every Service port.
const (
	connectTimeout     = 5 * time.Second
	consecutiveErrors  = 5
	baseEjectionTime   = 30 * time.Second
	maxEjectionTime    = 300 * time.Second
	maxEjectionPercent = 50
)

// buildCluster is the EDS cluster of one Service port; http2 makes it speak HTTP/2 (h2c).
func buildCluster(name string, p protocol, http2 bool) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_LEAST_REQUEST,
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:           wrapperspb.UInt32(consecutiveErrors),
			ConsecutiveGatewayFailure: wrapperspb.UInt32(consecutiveErrors),
			BaseEjectionTime:          durationpb.New(baseEjectionTime),
			MaxEjectionTime:           durationpb.New(maxEjectionTime),
			MaxEjectionPercent:        wrapperspb.UInt32(maxEjectionPercent),
		},
	}
	if p == protocolHTTP2 || (p == protocolHTTP && http2) {
		opts, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: opts}
	}
	return c, nil
}

// podInfo is what an endpoint's metadata says about the pod behind it.
type podInfo struct {
	serviceAccount string
	meshed         bool
}

// indexPods keeps, per namespace/name, the ServiceAccount and whether the pod carries a
// knit-proxy sidecar injected by a revision of this mesh.
func indexPods(pods []corev1.Pod) map[string]podInfo {
	out := make(map[string]podInfo, len(pods))
	for i := range pods {
		p := &pods[i]
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		out[p.Namespace+"/"+p.Name] = podInfo{serviceAccount: sa, meshed: isMeshed(p)}
	}
	return out
}

// isMeshed says whether the injector of a knit revision added the proxy sidecar to the pod.
func isMeshed(p *corev1.Pod) bool {
	if p.Annotations[injection.AnnotationInjectedRevision] == "" {
		return false
	}
	for _, c := range p.Spec.InitContainers {
		if c.Name == injection.ProxyContainerName {
			return true
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name == injection.ProxyContainerName {
			return true
		}
	}
	return false
}

// endpoint is one pod IP:port of a Service port, before it becomes an LbEndpoint.
type endpoint struct {
	ip     string
	port   uint32
	health corev3.HealthStatus
	pod    string // namespace/name, "" when the slice names no pod
}

// healthOf reads EndpointSlice conditions: ready (unset means ready) → HEALTHY, serving while
// terminating → DRAINING (used by the proxy only when nothing is HEALTHY), else UNHEALTHY.
func healthOf(c discoveryv1.EndpointConditions) corev3.HealthStatus {
	switch {
	case c.Ready == nil || *c.Ready:
		return corev3.HealthStatus_HEALTHY
	case c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating:
		return corev3.HealthStatus_DRAINING
	}
	return corev3.HealthStatus_UNHEALTHY
}

// healthRank orders health statuses so that duplicates across slices keep the best one.
func healthRank(h corev3.HealthStatus) int {
	switch h {
	case corev3.HealthStatus_HEALTHY:
		return 2
	case corev3.HealthStatus_DRAINING:
		return 1
	}
	return 0
}

// endpointsOf collects a Service port's endpoints from the Service's EndpointSlices, matching
// the slice port by the Service port's name; duplicates (an endpoint in two slices while
// slices are rebalanced) keep their healthiest state.
func endpointsOf(slices_ []*discoveryv1.EndpointSlice, port corev1.ServicePort) []endpoint {
	byAddr := map[string]endpoint{}
	for _, s := range slices_ {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var target int32
		for _, sp := range s.Ports {
			if sp.Port == nil || (sp.Protocol != nil && *sp.Protocol != corev1.ProtocolTCP) {
				continue
			}
			if ptrString(sp.Name) == port.Name {
				target = *sp.Port
				break
			}
		}
		if target <= 0 || target > 65535 {
			continue
		}
		for _, e := range s.Endpoints {
			pod := endpointPod(s, e)
			for _, addr := range e.Addresses {
				if net.ParseIP(addr) == nil {
					continue
				}
				ep := endpoint{ip: addr, port: uint32(target), health: healthOf(e.Conditions), pod: pod}
				key := net.JoinHostPort(addr, strconv.Itoa(int(target)))
				if old, ok := byAddr[key]; ok && healthRank(old.health) >= healthRank(ep.health) {
					continue
				}
				byAddr[key] = ep
			}
		}
	}
	out := make([]endpoint, 0, len(byAddr))
	for _, ep := range byAddr {
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b endpoint) int {
		return cmp.Or(cmp.Compare(a.ip, b.ip), cmp.Compare(a.port, b.port))
	})
	return out
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// LoadAssignments are the ClusterLoadAssignments of one Service's ports, exactly as Translate
// builds them, from the Service's EndpointSlices and the pods they name (other pods are
// ignored). The xDS server calls it for the Services whose endpoints changed, instead of
// translating the whole mesh. ExternalName Services have none; a port whose assignment cannot be
// built is left out and explained in problems (Translate then leaves out its cluster too).
func LoadAssignments(trustDomain string, svc *corev1.Service, slices_ []*discoveryv1.EndpointSlice, pods []corev1.Pod) (clas []*endpointv3.ClusterLoadAssignment, problems []string) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, nil
	}
	index := indexPods(pods)
	for _, p := range tcpPorts(svc) {
		cla, err := loadAssignment(ClusterName(svc.Namespace, svc.Name, p.Port), slices_, p, index, trustDomain)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		clas = append(clas, cla)
	}
	return clas, problems
}

// EndpointPods are the pods (namespace/name) an EndpointSlice's endpoints name: the pods whose
// changes change the slice's Services' ClusterLoadAssignments.
func EndpointPods(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, e := range s.Endpoints {
		if pod := endpointPod(s, e); pod != "" {
			out = append(out, pod)
		}
	}
	return out
}

// endpointPod is the namespace/name of the pod behind an endpoint, or "".
func endpointPod(s *discoveryv1.EndpointSlice, e discoveryv1.Endpoint) string {
	if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
		return ""
	}
	ns := e.TargetRef.Namespace
	if ns == "" {
		ns = s.Namespace
	}
	return ns + "/" + e.TargetRef.Name
}

func loadAssignment(cluster string, slices_ []*discoveryv1.EndpointSlice, port corev1.ServicePort, pods map[string]podInfo, trustDomain string) (*endpointv3.ClusterLoadAssignment, error) {
	cla, err := buildLoadAssignment(cluster, endpointsOf(slices_, port), pods, trustDomain)
	if err != nil {
		return nil, fmt.Errorf("endpoints of %s: %w", cluster, err)
	}
	return cla, nil
}

// buildLoadAssignment is the ClusterLoadAssignment of one cluster: one locality, each endpoint
// with knit's metadata (meshed, SPIFFE identity, pod) for mTLS peer checks and telemetry.
func buildLoadAssignment(cluster string, eps []endpoint, pods map[string]podInfo, trustDomain string) (*endpointv3.ClusterLoadAssignment, error) {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, ep := range eps {
		info, known := pods[ep.pod]
		identity := ""
		if known {
			ns, _, _ := strings.Cut(ep.pod, "/")
			identity = "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + info.serviceAccount
		}
		md, err := structpb.NewStruct(map[string]any{
			"meshed":   known && info.meshed,
			"identity": identity,
			"pod":      ep.pod,
		})
		if err != nil {
			return nil, err
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       ep.ip,
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: ep.port},
				}}},
			}},
			HealthStatus:        ep.health,
			LoadBalancingWeight: wrapperspb.UInt32(1),
			Metadata:            &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"knit": md}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}, nil
}
