package config

import (
	"strings"
	"testing"
)

const sidecarBase = `
listeners:
- {name: outbound, address: "127.0.0.1:15001", direction: outbound, originalDestination: true}
clusters:
- {name: web, endpoints: [{address: "10.0.0.1:8080"}]}
- {name: db, protocol: tcp}
virtualListeners:
- {name: web, address: "10.96.0.1:80", routeConfig: web, tcpCluster: web}
routeConfigs:
- name: web
  virtualHosts:
  - name: web
    routes:
`

func TestRouteAndVirtualListenerValidationNamesTheField(t *testing.T) {
	const r0 = "routeConfigs[0].virtualHosts[0].routes[0]"
	for _, tc := range []struct{ routes, extra, want string }{
		{`[{name: a, match: {regex: "(["}, clusters: [{name: web}]}]`, "", r0 + ".match.regex: not an RE2 expression"},
		{`[{name: a, match: {regex: "(?=x)"}, clusters: [{name: web}]}]`, "", r0 + ".match.regex: not an RE2 expression"},
		{`[{name: a, match: {path: /a, pathPrefix: /b}, clusters: [{name: web}]}]`, "", r0 + ".match: set at most one of prefix, pathPrefix, path and regex"},
		{`[{name: a, match: {headers: [{name: x, regex: "a++"}]}, clusters: [{name: web}]}]`, "", r0 + ".match.headers[0].regex: not an RE2 expression"},
		{`[{name: a, match: {headers: [{name: "bad name", exact: x}]}, clusters: [{name: web}]}]`, "", r0 + ".match.headers[0].name: \"bad name\" is not a header name"},
		{`[{name: a, match: {queryParams: [{name: q, exact: a, regex: b}]}, clusters: [{name: web}]}]`, "", r0 + ".match.queryParams[0]: set exact or regex, not both"},
		{`[{name: a}]`, "", r0 + ": set exactly one of clusters, redirect and directResponse"},
		{`[{name: a, redirect: {code: 304}}]`, "", r0 + ".redirect.code: must be 301, 302, 303, 307 or 308, got 304"},
		{`[{name: a, redirect: {scheme: ftp}}]`, "", r0 + ".redirect.scheme: must be http or https"},
		{`[{name: a, match: {path: /a}, redirect: {prefixRewrite: /b}}]`, "", r0 + ".redirect.prefixRewrite: needs a prefix or pathPrefix match"},
		{`[{name: a, redirect: {path: /a}, clusters: [{name: web}]}]`, "", r0 + ": set exactly one of clusters, redirect and directResponse"},
		{`[{name: a, directResponse: {status: 99}}]`, "", r0 + ".directResponse.status: must be between 200 and 599"},
		{`[{name: a, rewrite: {fullPath: x}, clusters: [{name: web}]}]`, "", r0 + ".rewrite.fullPath: \"x\" must start with /"},
		{`[{name: a, rewrite: {regex: {pattern: "(", substitution: x}}, clusters: [{name: web}]}]`, "", r0 + ".rewrite.regex.pattern: not an RE2 expression"},
		{`[{name: a, requestHeaders: {set: [{name: x, value: "a\nb"}]}, clusters: [{name: web}]}]`, "", r0 + ".requestHeaders.set[0].value"},
		{`[{name: a, responseHeaders: {remove: ["a b"]}, clusters: [{name: web}]}]`, "", r0 + ".responseHeaders.remove[0]: \"a b\" is not a header name"},
		{`[{name: a, clusters: [{name: db}]}]`, "", r0 + ".clusters[0].name: cluster \"db\" is tcp"},
		{`[{name: a, clusters: [{name: web}]}]`, "- {name: x, address: \"svc:80\", tcpCluster: db}", "virtualListeners[1].address: \"svc:80\" is not IP:port"},
		{`[{name: a, clusters: [{name: web}]}]`, "- {name: x, address: \"10.96.0.1:80\", tcpCluster: db}", "virtualListeners[1].address: address \"10.96.0.1:80\" used by two virtual listeners"},
		{`[{name: a, clusters: [{name: web}]}]`, "- {name: x, address: \"10.96.0.2:80\"}", "virtualListeners[1]: needs routeConfig, tcpCluster or both"},
		{`[{name: a, clusters: [{name: web}]}]`, "- {name: x, address: \"10.96.0.2:80\", routeConfig: nope}", "virtualListeners[1].routeConfig: unknown route config \"nope\""},
	} {
		yaml := sidecarBase + "    - " + strings.TrimSuffix(strings.TrimPrefix(tc.routes, "["), "]") + "\n"
		if tc.extra != "" {
			yaml = strings.Replace(yaml, "routeConfigs:", tc.extra+"\nrouteConfigs:", 1)
		}
		_, err := Parse([]byte(yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s:\n got %v\nwant %q", tc.routes, tc.extra, err, tc.want)
		}
	}
}

func TestVirtualListenersNeedACapturedOutboundListener(t *testing.T) {
	yaml := strings.Replace(sidecarBase, "originalDestination: true", "routeConfig: web", 1) + "    - {name: a, clusters: [{name: web}]}\n"
	if _, err := Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), "virtualListeners: need an outbound listener with originalDestination") {
		t.Fatalf("got %v", err)
	}
}

func TestEndpointsOfKeepsHealthyThenDrainingNeverUnhealthy(t *testing.T) {
	b := &Bootstrap{Clusters: []Cluster{{Name: "c"}}, Assignments: []Assignment{{Cluster: "c", Endpoints: []Endpoint{
		{Address: "a:1", Health: EndpointUnhealthy}, {Address: "b:1", Health: EndpointDraining}, {Address: "c:1"},
	}}}}
	b.SetDefaults()
	if eps := b.EndpointsOf("c"); len(eps) != 1 || eps[0].Address != "c:1" {
		t.Fatalf("healthy only: %+v", eps)
	}
	b.Assignments[0].Endpoints = b.Assignments[0].Endpoints[:2]
	if eps := b.EndpointsOf("c"); len(eps) != 1 || eps[0].Address != "b:1" {
		t.Fatalf("draining when none is healthy: %+v", eps)
	}
	if err := (&Bootstrap{Listeners: []Listener{{Name: "l", Address: ":1", Direction: Inbound, Protocol: ListenerAuto}},
		Clusters: []Cluster{{Name: "c", Protocol: ClusterHTTP1, LBPolicy: LBP2CEWMA, Endpoints: []Endpoint{{Address: "a:1", Health: "sick"}}}}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "clusters[0].endpoints[0].health: must be healthy, unhealthy or draining") {
		t.Fatalf("bad health: %v", err)
	}
}

func TestMeshedEndpointNeedsTheIdentityExpectedOfIt(t *testing.T) {
	b := &Bootstrap{Listeners: []Listener{{Name: "l", Address: ":1", Direction: Inbound, Protocol: ListenerAuto, TCPCluster: "c"}},
		Clusters: []Cluster{{Name: "c", Protocol: ClusterTCP, LBPolicy: LBP2CEWMA, Endpoints: []Endpoint{{Address: "a:1", Meshed: true}}}}}
	if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "clusters[0].endpoints[0].identity: a meshed endpoint needs the SPIFFE ID") {
		t.Fatalf("meshed without identity: %v", err)
	}
	b.Clusters[0].Endpoints[0].Identity = "spiffe://cluster.local/ns/shop/sa/web"
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
}
