package tlsfiles

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/knit-mesh/knit/proxy/config"
)

// errNoServerName fails a handshake whose server name no entry serves.
var errNoServerName = errors.New("no certificate for this server name")

// SNIConfig terminates TLS 1.2 or later with the certificates of the entry that serves the
// client's server name (config.ServerTLS.SNI: exact name, then the longest wildcard, then the
// entry without names), offering alpn. The pairs are parsed once, here: a reload with new
// certificates builds a new config, which new connections use.
func SNIConfig(entries []config.SNICertificates, alpn []string) (*tls.Config, error) {
	s := &sniTable{exact: map[string][]tls.Certificate{}}
	for _, e := range entries {
		var certs []tls.Certificate
		for i, p := range e.Certificates {
			c, err := tls.X509KeyPair([]byte(p.CertificatePEM), []byte(p.KeyPEM))
			if err != nil {
				return nil, fmt.Errorf("sni %s: certificates[%d]: %w", e.Name, i, err)
			}
			certs = append(certs, c)
		}
		if len(e.ServerNames) == 0 {
			s.fallback = certs
		}
		for _, n := range e.ServerNames {
			n = strings.ToLower(n)
			if suffix, ok := strings.CutPrefix(n, "*"); ok {
				s.wildcards = append(s.wildcards, wildcard{suffix: suffix, certs: certs})
			} else {
				s.exact[n] = certs
			}
		}
	}
	// Longest suffix first: the most specific wildcard wins.
	slices.SortStableFunc(s.wildcards, func(a, b wildcard) int { return len(b.suffix) - len(a.suffix) })
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: alpn,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			certs := s.lookup(strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")))
			if len(certs) == 0 {
				return nil, errNoServerName
			}
			for i := range certs {
				if hello.SupportsCertificate(&certs[i]) == nil {
					return &certs[i], nil
				}
			}
			return &certs[0], nil
		},
	}, nil
}

type sniTable struct {
	exact     map[string][]tls.Certificate
	wildcards []wildcard // longest suffix first
	fallback  []tls.Certificate
}

type wildcard struct {
	suffix string // ".example.com"
	certs  []tls.Certificate
}

func (s *sniTable) lookup(name string) []tls.Certificate {
	if name != "" {
		if c, ok := s.exact[name]; ok {
			return c
		}
		for _, w := range s.wildcards {
			if strings.HasSuffix(name, w.suffix) && len(name) > len(w.suffix) {
				return w.certs
			}
		}
	}
	return s.fallback
}
