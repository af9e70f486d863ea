package dataplane

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// BenchmarkFastPathGET: keep-alive GETs through the HTTP/1.1 fast path on
// loopback (a ratio against another build in the same run, not a target).
func BenchmarkFastPathGET(b *testing.B) {
	body := strings.Repeat("x", 1024)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	defer up.Close()
	cfg, err := config.Parse([]byte(simpleConfig(up.Listener.Addr().String())))
	if err != nil {
		b.Fatal(err)
	}
	p := New(logr.Discard(), metrics.New())
	if err := p.Apply(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	defer p.Drain(context.Background())
	url := "http://" + p.ListenerAddr("in").String() + "/"
	cl := client()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := cl.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
