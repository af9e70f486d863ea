package dataplane

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// A target's header changes apply to relayed streams as on the HTTP path: request headers are
// added, set (replacing the client's) and removed before the upstream sees them, response
// headers before the client does, mixed-case names included; fields HTTP/2 framing owns
// (host, content-length, connection-specific ones) are left alone.
func TestRelayAppliesATargetsHeaderChanges(t *testing.T) {
	relayed := relayOn(t)
	up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "added=%q set=%q gone=%q host=%q", r.Header.Values("X-Added"), r.Header.Values("X-Set"),
			r.Header.Values("X-Gone"), r.Host)
		w.Header().Set("X-Up-Gone", "1")
		w.Header().Set("X-Resp-Set", "upstream")
	}))
	p := startProxy(t, fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", protocol: http, routeConfig: main}
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - name: r
      clusters:
      - name: c
        requestHeaders:
          add: [{name: X-Added, value: a}, {name: Connection, value: close}]
          set: [{name: x-SET, value: s}, {name: Host, value: evil.example}]
          remove: [X-Gone]
        responseHeaders:
          add: [{name: X-Resp-Added, value: b}]
          set: [{name: X-Resp-Set, value: proxy}]
          remove: [x-up-gone, Content-Length]
clusters:
- {name: c, protocol: http2, endpoints: [{address: %q}]}
`, up))
	req, _ := http.NewRequest("GET", "http://"+addr(t, p, "in")+"/x", nil)
	req.Host = "app.example"
	req.Header.Set("X-Set", "client")
	req.Header.Set("X-Gone", "1")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	if want := `added=["a"] set=["s"] gone=[] host="app.example"`; body != want {
		t.Fatalf("upstream saw %s, want %s", body, want)
	}
	h := resp.Header
	if h.Get("X-Resp-Added") != "b" || len(h.Values("X-Resp-Set")) != 1 || h.Get("X-Resp-Set") != "proxy" ||
		h.Get("X-Up-Gone") != "" || resp.ContentLength != int64(len(body)) {
		t.Fatalf("response headers %v (content-length %d)", h, resp.ContentLength)
	}
	relayed()
}
