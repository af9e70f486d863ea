package config

import (
	"encoding/json"
	"testing"
)

// FuzzParseConfig: any input either parses into a config that passes its own
// validation and survives a JSON round trip (what /config serves), or fails
// with an error — never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("listeners: [{name: a, address: \"127.0.0.1:1\", protocol: tcp, tcpCluster: c}]\nclusters: [{name: c, protocol: tcp}]"))
	f.Add([]byte("{}"))
	f.Add([]byte("listeners: 5"))
	f.Add([]byte("drain: {timeout: 1.5}"))
	f.Add([]byte("clusters: [{name: c, outlierDetection: {consecutive5xx: -1}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed config fails validation: %v", err)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("round trip of %s failed: %v", out, err)
		}
	})
}
