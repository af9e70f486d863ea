package admin

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/knit-mesh/knit/internal/buildinfo"
	"github.com/knit-mesh/knit/proxy/metrics"
)

type readyState struct{}

func (readyState) Ready() bool        { return true }
func (readyState) CurrentConfig() any { return nil }

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, body)
	}
	return string(body)
}

// The probe port (the only one reachable from outside the pod) says which release the proxy was
// built as, on /version and in the knit_build_info series.
func TestProbePortReportsTheBuildVersion(t *testing.T) {
	old := buildinfo.Version
	buildinfo.Version = "v9.8.7"
	t.Cleanup(func() { buildinfo.Version = old })

	m := metrics.New()
	s, err := Start("127.0.0.1:0", Probes, readyState{}, m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	base := "http://" + s.Addr().String()
	if got := get(t, base+"/version"); got != "v9.8.7\n" {
		t.Errorf("/version = %q, want %q", got, "v9.8.7\n")
	}
	if got := get(t, base+"/metrics"); !strings.Contains(got, `knit_build_info{version="v9.8.7"} 1`) {
		t.Errorf("/metrics has no knit_build_info for v9.8.7:\n%s", got)
	}
}
