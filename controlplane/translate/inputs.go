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

// Package translate turns Kubernetes Services, EndpointSlices, Pods and Gateway API mesh routes
// (GAMMA: HTTPRoute and GRPCRoute whose parentRefs name a Service) into the Envoy xDS resources
// of controlplane/xds/CONTRACT.md. It is pure: no client, no clock, the same inputs give the same
// resources, so the xDS server can diff them and tests can compare them with golden files.
package translate

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ClusterDomain is the DNS suffix of Service names in resource names.
const ClusterDomain = "cluster.local"

// Inputs is everything the translation reads; the xDS server fills it from its informer cache.
type Inputs struct {
	// TrustDomain is the SPIFFE trust domain of endpoint identities.
	TrustDomain    string
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
	Pods           []corev1.Pod
	HTTPRoutes     []gwv1.HTTPRoute
	GRPCRoutes     []gwv1.GRPCRoute
	// Gateways are those whose GatewayClass knit serves (the caller filters by controllerName).
	Gateways []gwv1.Gateway
	// NamespaceLabels are every namespace's labels, for Gateway listeners that allow routes from
	// the namespaces a selector picks.
	NamespaceLabels map[string]map[string]string
	// ReferenceGrants let routes name backend Services in other namespaces, and Gateways
	// certificate Secrets.
	ReferenceGrants []gwv1.ReferenceGrant
	// Secrets are the kubernetes.io/tls Secrets that knit Gateways' HTTPS listeners name (the
	// caller reads no others: ReferencedSecrets).
	Secrets []corev1.Secret
}

// Host is the fully qualified name of a Service.
func Host(namespace, name string) string {
	return name + "." + namespace + ".svc." + ClusterDomain
}

// ClusterName names the cluster (and its ClusterLoadAssignment) of one Service port.
func ClusterName(namespace, name string, port int32) string {
	return "outbound|" + strconv.Itoa(int(port)) + "||" + Host(namespace, name)
}

// RouteConfigName names the RouteConfiguration (and its one virtual host) of one Service port.
func RouteConfigName(namespace, name string, port int32) string {
	return Host(namespace, name) + ":" + strconv.Itoa(int(port))
}

// ListenerName names the virtual listener of one ClusterIP and port; IPv6 addresses are bracketed.
func ListenerName(ip string, port int32) string {
	if strings.Contains(ip, ":") {
		ip = "[" + ip + "]"
	}
	return ip + "_" + strconv.Itoa(int(port))
}

// protocol is how the mesh treats a Service port.
type protocol int

const (
	protocolHTTP  protocol = iota // HTTP/1.1 to the backend (and unknown ports: GAMMA treats them as HTTP-capable)
	protocolHTTP2                 // HTTP/2 (h2c) to the backend: gRPC, http2, h2c
	protocolTCP                   // opaque bytes only
)

// portProtocol reads a Service port's appProtocol, or else the prefix of its name (Istio's
// "http-web" convention), and falls back to HTTP as GAMMA does for ports it knows nothing about.
func portProtocol(p corev1.ServicePort) protocol {
	name := ""
	if p.AppProtocol != nil {
		name = strings.ToLower(*p.AppProtocol)
	} else {
		name, _, _ = strings.Cut(strings.ToLower(p.Name), "-")
	}
	switch name {
	case "grpc", "http2", "h2c", "kubernetes.io/h2c", "grpc-web":
		return protocolHTTP2
	case "tcp", "tls", "https", "mysql", "redis", "mongo", "mongodb", "postgres", "postgresql",
		"kafka", "amqp", "zookeeper", "cassandra", "nats", "memcached", "kubernetes.io/wss":
		return protocolTCP
	}
	return protocolHTTP
}

// serviceKey identifies a Service.
type serviceKey struct{ namespace, name string }

func (k serviceKey) String() string { return k.namespace + "/" + k.name }

// clusterIPs are the virtual IPs a Service's listeners match: none for headless and ExternalName
// Services, whose clients reach pod IPs directly.
func clusterIPs(svc *corev1.Service) []string {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if ip == corev1.ClusterIPNone || net.ParseIP(ip) == nil {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// tcpPorts are the ports of a Service that carry TCP (UDP and SCTP are not proxied).
func tcpPorts(svc *corev1.Service) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			out = append(out, p)
		}
	}
	return out
}

func findPort(svc *corev1.Service, port int32) (corev1.ServicePort, bool) {
	for _, p := range tcpPorts(svc) {
		if p.Port == port {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

func describePorts(svc *corev1.Service) string {
	var ports []string
	for _, p := range tcpPorts(svc) {
		ports = append(ports, strconv.Itoa(int(p.Port)))
	}
	if len(ports) == 0 {
		return "no TCP ports"
	}
	return fmt.Sprintf("TCP ports %s", strings.Join(ports, ", "))
}
