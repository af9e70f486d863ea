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

// A route's own rewrite and header changes apply to relayed streams as on the HTTP path: the
// path and :authority rewritten, the route's header changes before its target's (so a target's
// set wins over the route's), on the request and on the response.
func TestRelayAppliesARoutesRewriteAndHeaderChanges(t *testing.T) {
	relayed := relayOn(t)
	up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s host=%s order=%q route=%q", r.URL.RequestURI(), r.Host, r.Header.Values("X-Order"),
			r.Header.Values("X-Route"))
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
      match: {pathPrefix: /old}
      rewrite: {prefixRewrite: /new, host: rewritten.example}
      requestHeaders: {set: [{name: X-Order, value: route}], add: [{name: X-Route, value: r}]}
      responseHeaders: {set: [{name: X-Resp-Order, value: route}], add: [{name: X-Resp-Route, value: r}]}
      clusters:
      - name: c
        requestHeaders: {set: [{name: X-Order, value: target}]}
        responseHeaders: {set: [{name: X-Resp-Order, value: target}]}
clusters:
- {name: c, protocol: http2, endpoints: [{address: %q}]}
`, up))
	resp, err := h2cClient().Get("http://" + addr(t, p, "in") + "/old/x?q=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := `path=/new/x?q=1 host=rewritten.example order=["target"] route=["r"]`; string(b) != want {
		t.Fatalf("upstream saw %s, want %s", b, want)
	}
	if h := resp.Header; h.Get("X-Resp-Order") != "target" || h.Get("X-Resp-Route") != "r" {
		t.Fatalf("response headers %v", h)
	}
	relayed()
}
