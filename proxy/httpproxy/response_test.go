package httpproxy

import (
	"net/http"
	"testing"
)

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":       {"keep-alive, X-Hop , close", "Upgrade"},
		"X-Hop":            {"1"},
		"Keep-Alive":       {"timeout=5"},
		"Te":               {"trailers"},
		"Upgrade":          {"websocket"},
		"X-End-To-End":     {"yes"},
		"Proxy-Connection": {"keep-alive"},
	}
	removeHopHeaders(h)
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Upgrade", "Proxy-Connection"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s not removed", k)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("X-End-To-End") != "yes" {
		t.Fatalf("removed too much: %v", h)
	}
	h = http.Header{"Te": {"gzip"}}
	removeHopHeaders(h)
	if _, ok := h["Te"]; ok {
		t.Fatal("TE other than trailers must not be forwarded")
	}
}

func BenchmarkRemoveHopHeaders(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{"Connection": {"keep-alive"}, "User-Agent": {"x"}}
		removeHopHeaders(h)
	}
}
