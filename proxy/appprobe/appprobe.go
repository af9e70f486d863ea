// Package appprobe answers the kubelet's probes of a meshed app on the
// proxy's admin port. The injector rewrites every httpGet, tcpSocket and grpc
// probe of the app to GET /app-health/<container>/<kind> on the admin port
// (which the capture rules leave alone) and hands the original probe handlers
// to the proxy in KNIT_APP_PROBES; the proxy runs them against the app from
// inside the pod, so probes keep working when inbound traffic must be mTLS.
package appprobe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PathPrefix is where the rewritten probes point.
const PathPrefix = "/app-health/"

// DefaultTimeout bounds one check; the kubelet's own timeoutSeconds ends it
// sooner (its request is cancelled when it gives up).
const DefaultTimeout = 5 * time.Second

// Handler is the JSON of a corev1.ProbeHandler, reduced to what the proxy
// runs (exec probes stay in the app container; named ports are resolved to
// numbers by the injector).
type Handler struct {
	HTTPGet   *HTTPGet   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocket `json:"tcpSocket,omitempty"`
	GRPC      *GRPC      `json:"grpc,omitempty"`
}

type HTTPGet struct {
	Path        string       `json:"path,omitempty"`
	Port        Port         `json:"port"`
	Host        string       `json:"host,omitempty"`
	Scheme      string       `json:"scheme,omitempty"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders,omitempty"`
}

type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type TCPSocket struct {
	Port Port   `json:"port"`
	Host string `json:"host,omitempty"`
}

type GRPC struct {
	Port    int32   `json:"port"`
	Service *string `json:"service,omitempty"`
}

// Port is an intstr port that must be numeric.
type Port int

func (p *Port) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*p = Port(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("port %s is neither a number nor a string", b)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("port %q is named; it must be a number", s)
	}
	*p = Port(n)
	return nil
}

// Parse reads KNIT_APP_PROBES: a JSON object from "/app-health/<container>/<kind>" to a probe handler.
func Parse(s string) (map[string]Handler, error) {
	out := map[string]Handler{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("KNIT_APP_PROBES: %w", err)
	}
	for path, h := range out {
		n := 0
		var port int
		if h.HTTPGet != nil {
			n, port = n+1, int(h.HTTPGet.Port)
			if sc := strings.ToUpper(h.HTTPGet.Scheme); sc != "" && sc != "HTTP" && sc != "HTTPS" {
				return nil, fmt.Errorf("KNIT_APP_PROBES[%q].httpGet.scheme: %q is not HTTP or HTTPS", path, h.HTTPGet.Scheme)
			}
		}
		if h.TCPSocket != nil {
			n, port = n+1, int(h.TCPSocket.Port)
		}
		if h.GRPC != nil {
			n, port = n+1, int(h.GRPC.Port)
		}
		switch {
		case !strings.HasPrefix(path, PathPrefix):
			return nil, fmt.Errorf("KNIT_APP_PROBES: key %q does not start with %s", path, PathPrefix)
		case n != 1:
			return nil, fmt.Errorf("KNIT_APP_PROBES[%q]: needs exactly one of httpGet, tcpSocket, grpc", path)
		case port < 1 || port > 65535:
			return nil, fmt.Errorf("KNIT_APP_PROBES[%q]: port %d is not between 1 and 65535", path, port)
		}
	}
	return out, nil
}

// Prober runs the probes. Host is where the app is reached when a probe
// names no host (127.0.0.1: the proxy shares the pod's network namespace).
type Prober struct {
	Probes  map[string]Handler
	Host    string
	Timeout time.Duration
	client  *http.Client
}

// New returns a prober for probes.
func New(probes map[string]Handler) *Prober {
	t := &http.Transport{
		DisableKeepAlives:  true, // as the kubelet: a fresh connection per probe
		DisableCompression: true,
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // as the kubelet for HTTPS probes
	}
	return &Prober{Probes: probes, Host: "127.0.0.1", Timeout: DefaultTimeout, client: &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// ServeHTTP answers GET /app-health/<container>/<kind>: 200 when the app's
// probe passes, 503 with the reason when it fails, 404 for unknown probes.
func (p *Prober) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := p.Probes[r.URL.Path]
	if !ok {
		http.Error(w, "no such app probe", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.Timeout)
	defer cancel()
	if err := p.Check(ctx, h); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

// Check runs one probe.
func (p *Prober) Check(ctx context.Context, h Handler) error {
	switch {
	case h.HTTPGet != nil:
		return p.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.host(h.TCPSocket.Host), strconv.Itoa(int(h.TCPSocket.Port))))
		if err != nil {
			return err
		}
		return c.Close()
	case h.GRPC != nil:
		return p.grpcHealth(ctx, h.GRPC)
	}
	return errors.New("empty probe")
}

func (p *Prober) host(h string) string {
	if h != "" {
		return h
	}
	return p.Host
}

func (p *Prober) httpGet(ctx context.Context, g *HTTPGet) error {
	scheme := "http"
	if strings.EqualFold(g.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(p.host(g.Host), strconv.Itoa(int(g.Port))) + path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/knit")
	req.Header.Set("Accept", "*/*")
	for _, hd := range g.HTTPHeaders {
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with status %d", resp.StatusCode)
	}
	return nil
}

// grpcHealth calls grpc.health.v1.Health/Check over h2c, encoding the two
// one-field protobuf messages by hand (no gRPC library in the proxy).
func (p *Prober) grpcHealth(ctx context.Context, g *GRPC) error {
	var msg []byte
	if g.Service != nil && *g.Service != "" {
		msg = append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(*g.Service)))...)
		msg = append(msg, *g.Service...)
	}
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+net.JoinHostPort(p.Host, strconv.Itoa(int(g.Port)))+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	resp, err := (&http.Transport{Protocols: &protos, DisableKeepAlives: true}).RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return err
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status") // trailers-only response
	}
	if st != "0" {
		return fmt.Errorf("gRPC health check failed: grpc-status %s %s", st, resp.Trailer.Get("Grpc-Message")+resp.Header.Get("Grpc-Message"))
	}
	if len(data) < 5 {
		return errors.New("gRPC health check: empty response")
	}
	status := servingStatus(data[5:])
	if status != 1 {
		return fmt.Errorf("gRPC health check: status %d, want SERVING (1)", status)
	}
	return nil
}

// servingStatus reads field 1 (varint) of a HealthCheckResponse.
func servingStatus(m []byte) uint64 {
	for len(m) > 0 {
		tag, n := binary.Uvarint(m)
		if n <= 0 {
			return 0
		}
		m = m[n:]
		switch tag & 7 {
		case 0:
			v, n := binary.Uvarint(m)
			if n <= 0 {
				return 0
			}
			if tag>>3 == 1 {
				return v
			}
			m = m[n:]
		case 2:
			l, n := binary.Uvarint(m)
			if n <= 0 || uint64(len(m)-n) < l {
				return 0
			}
			m = m[n+int(l):]
		default:
			return 0
		}
	}
	return 0 // UNKNOWN
}
