package config

import (
	"strings"
	"testing"
)

const oneRoute = `
accessLog: {enabled: true, format: %s}
listeners: [{name: in, address: "127.0.0.1:0", routeConfig: main}]
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: r, clusters: [{name: c}]%s}]}]
clusters: [{name: c, endpoints: [{address: "127.0.0.1:1"}]}]
`

func TestUpgradesAndAccessLogFormat(t *testing.T) {
	b, err := Parse([]byte(strings.NewReplacer("%s", "").Replace(strings.Replace(oneRoute, "format: %s", "format: text", 1))))
	if err != nil {
		t.Fatal(err)
	}
	if up := b.RouteConfigs[0].VirtualHosts[0].Routes[0].Upgrades; len(up) != 1 || up[0] != "websocket" || b.AccessLog.Format != AccessLogText {
		t.Fatalf("defaults: upgrades %v, format %q", up, b.AccessLog.Format)
	}
	for _, tc := range []struct{ format, route, want string }{
		{"json", ", upgrades: [h2c]", "routes[0].upgrades[0]: h2c upgrades are never tunnelled"},
		{"json", `, upgrades: ["web socket"]`, `routes[0].upgrades[0]: "web socket" is not an upgrade protocol name`},
		{"xml", "", `accessLog.format: must be json or text, got "xml"`},
	} {
		in := strings.Replace(strings.Replace(oneRoute, "format: %s", "format: "+tc.format, 1), "%s", tc.route, 1)
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.format, tc.route, err, tc.want)
		}
	}
}
