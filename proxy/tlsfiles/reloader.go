// Package tlsfiles loads certificates from files and reloads them when the
// files change, so a renewed certificate is used without a restart.
// The mesh identity work will reuse it with in-memory keys.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval bounds how stale a certificate may be after its files change.
// Files are checked lazily on handshake, at most once per interval.
var CheckInterval = time.Second

// KeyPair is a certificate and key pair read from files.
type KeyPair struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]

	mu        sync.Mutex
	lastCheck time.Time
	stamp     string
}

// LoadKeyPair reads the pair once; it fails if the files are unusable.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	kp := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.reload(); err != nil {
		return nil, err
	}
	return kp, nil
}

func fileStamp(paths ...string) (string, error) {
	s := ""
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

func (kp *KeyPair) reload() error {
	stamp, err := fileStamp(kp.certFile, kp.keyFile)
	if err != nil {
		return fmt.Errorf("stat certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", kp.certFile, err)
	}
	kp.cert.Store(&cert)
	kp.stamp = stamp
	return nil
}

// Current returns the newest certificate, re-reading the files if they
// changed. A broken new file keeps the last good certificate.
func (kp *KeyPair) Current() *tls.Certificate {
	kp.mu.Lock()
	if time.Since(kp.lastCheck) >= CheckInterval {
		kp.lastCheck = time.Now()
		if stamp, err := fileStamp(kp.certFile, kp.keyFile); err == nil && stamp != kp.stamp {
			_ = kp.reload() // keep the last good pair on error
		}
	}
	kp.mu.Unlock()
	return kp.cert.Load()
}

// ServerConfig terminates TLS with the pair, offering the given ALPN protocols.
func ServerConfig(kp *KeyPair, alpn []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: alpn,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.Current(), nil
		},
	}
}

// ClientConfig originates TLS to upstreams. caFile empty means system roots;
// a client pair is optional.
func ClientConfig(caFile, certFile, keyFile, serverName string, alpn []string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, NextProtos: alpn}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA %s: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificates in CA file " + caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		kp, err := LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.Current(), nil
		}
	}
	return cfg, nil
}
