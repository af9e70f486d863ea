// Package mtls is the inbound side of mutual TLS between sidecars: per connection it tells a
// mesh peer (a TLS ClientHello offering knit's ALPN protocol) from plaintext, terminates and
// verifies the former, and under STRICT refuses the latter. The peer's SPIFFE ID goes with the
// connection to the request path.
package mtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/cryptobyte"

	"github.com/knit-mesh/knit/proxy/detect"
	"github.com/knit-mesh/knit/proxy/identity"
)

// Mode is the Mesh's mtls.mode.
type Mode string

const (
	// Permissive accepts mutual TLS from mesh peers and plaintext from anyone.
	Permissive Mode = "PERMISSIVE"
	// Strict accepts mutual TLS from mesh peers only.
	Strict Mode = "STRICT"
)

// ParseMode reads KNIT_MTLS_MODE; empty is PERMISSIVE, the API's default.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Permissive:
		return Permissive, nil
	case Strict:
		return Strict, nil
	}
	return "", fmt.Errorf("mTLS mode %q is not STRICT or PERMISSIVE", s)
}

// ErrPlaintextRefused is returned for a plaintext connection under STRICT.
var ErrPlaintextRefused = errors.New("plaintext refused: mtls.mode is STRICT")

// Inbound decides, connection by connection, what the inbound listener serves.
type Inbound struct {
	Mode     Mode
	Identity *identity.Manager
	Log      logr.Logger
	// HandshakeTimeout bounds reading the ClientHello and the handshake.
	HandshakeTimeout time.Duration
	conns            *prometheus.CounterVec
}

// NewInbound registers the inbound connection counter in reg.
func NewInbound(mode Mode, id *identity.Manager, log logr.Logger, reg prometheus.Registerer) (*Inbound, error) {
	in := &Inbound{Mode: mode, Identity: id, Log: log, HandshakeTimeout: 10 * time.Second,
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_proxy_inbound_connections_total",
			Help: "Inbound connections by security (mtls, plaintext, refused) and the peer's SPIFFE ID (empty without mTLS).",
		}, []string{"security", "peer_identity"})}
	if err := reg.Register(in.conns); err != nil {
		return nil, fmt.Errorf("mtls metrics: %w", err)
	}
	return in, nil
}

// Accept takes a connection whose first bytes were sniffed as proto. A mesh peer's TLS is
// terminated (its certificate verified against the trust bundle) and the decrypted connection
// returned with the peer's SPIFFE ID; anything else is returned as it came, or refused under
// STRICT with ErrPlaintextRefused (the caller closes c).
func (in *Inbound) Accept(c net.Conn, isTLS bool, dst string) (net.Conn, string, error) {
	if isTLS {
		hello, mesh, err := in.readClientHello(c)
		if err != nil {
			return nil, "", err
		}
		c = detect.Replay(c, hello)
		if mesh {
			return in.terminate(c)
		}
	}
	if in.Mode == Strict {
		in.conns.WithLabelValues("refused", "").Inc()
		in.Log.Info("refused a plaintext connection: mtls.mode is STRICT, so only mutual TLS from mesh proxies is accepted",
			"remote", c.RemoteAddr().String(), "destination", dst, "tls", isTLS)
		return nil, "", ErrPlaintextRefused
	}
	in.conns.WithLabelValues("plaintext", "").Inc()
	return c, "", nil
}

func (in *Inbound) terminate(c net.Conn) (net.Conn, string, error) {
	tc := tls.Server(c, in.Identity.ServerTLSConfig([]string{identity.ALPN}))
	ctx, cancel := context.WithTimeout(context.Background(), in.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		in.conns.WithLabelValues("refused", "").Inc()
		in.Log.V(1).Info("mutual TLS handshake failed", "remote", c.RemoteAddr().String(), "error", err.Error())
		return nil, "", fmt.Errorf("mutual TLS handshake: %w", err)
	}
	peer := identity.PeerID(tc.ConnectionState())
	in.conns.WithLabelValues("mtls", peer).Inc()
	return tc, peer, nil
}

// maxRecord bounds the first TLS record read to find the ALPN offer.
const maxRecord = 5 + 16384 + 2048

// readClientHello reads the first TLS record and says whether it is a ClientHello offering
// knit's ALPN protocol. The bytes read are returned so they can be replayed.
func (in *Inbound) readClientHello(c net.Conn) ([]byte, bool, error) {
	if err := c.SetReadDeadline(time.Now().Add(in.HandshakeTimeout)); err != nil {
		return nil, false, err
	}
	defer c.SetReadDeadline(time.Time{})
	head := make([]byte, 5)
	if _, err := io.ReadFull(c, head); err != nil {
		return nil, false, fmt.Errorf("reading the TLS record header: %w", err)
	}
	n := int(head[3])<<8 | int(head[4])
	if 5+n > maxRecord {
		return head, false, nil
	}
	record := make([]byte, 5+n)
	copy(record, head)
	if _, err := io.ReadFull(c, record[5:]); err != nil {
		return nil, false, fmt.Errorf("reading the TLS ClientHello: %w", err)
	}
	return record, slices.Contains(offeredALPN(record[5:]), identity.ALPN), nil
}

// offeredALPN returns the ALPN protocols of a ClientHello handshake message (RFC 8446 4.1.2,
// RFC 7301), or nil when the message is not one or does not parse.
func offeredALPN(msg []byte) []string {
	s := cryptobyte.String(msg)
	var typ uint8
	var body, sessionID, suites, compression, exts cryptobyte.String
	if !s.ReadUint8(&typ) || typ != 1 || !s.ReadUint24LengthPrefixed(&body) ||
		!body.Skip(2+32) || !body.ReadUint8LengthPrefixed(&sessionID) ||
		!body.ReadUint16LengthPrefixed(&suites) || !body.ReadUint8LengthPrefixed(&compression) ||
		!body.ReadUint16LengthPrefixed(&exts) {
		return nil
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return nil
		}
		if typ != 16 { // application_layer_protocol_negotiation
			continue
		}
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) {
			return nil
		}
		var out []string
		for !list.Empty() {
			var p cryptobyte.String
			if !list.ReadUint8LengthPrefixed(&p) {
				return nil
			}
			out = append(out, string(p))
		}
		return out
	}
	return nil
}
