package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// maxBundleBytes bounds the trust bundle file: a handful of roots.
const maxBundleBytes = 1 << 20

// bundle is the trust bundle file's roots, replaced whole when the file's content changes (a
// ConfigMap volume swaps a symlink, so content, not modification time, is compared).
type bundle struct {
	path string

	mu    sync.Mutex
	sum   [sha256.Size]byte
	roots atomic.Pointer[x509.CertPool]
	n     atomic.Int64
}

// reload reads the file and replaces the roots if its content changed. A file without a single
// usable root is refused and the roots in use are kept.
func (b *bundle) reload() (changed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	raw, err := os.ReadFile(b.path)
	if err != nil {
		return false, fmt.Errorf("reading trust bundle: %w", err)
	}
	if len(raw) > maxBundleBytes {
		return false, fmt.Errorf("trust bundle %s is %d bytes, more than %d", b.path, len(raw), maxBundleBytes)
	}
	sum := sha256.Sum256(raw)
	if b.roots.Load() != nil && bytes.Equal(sum[:], b.sum[:]) {
		return false, nil
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := raw; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return false, fmt.Errorf("trust bundle %s: %w", b.path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return false, fmt.Errorf("trust bundle %s holds no certificate", b.path)
	}
	b.sum = sum
	b.roots.Store(pool)
	b.n.Store(int64(n))
	return true, nil
}

func (b *bundle) pool() *x509.CertPool { return b.roots.Load() }

func (b *bundle) count() int { return int(b.n.Load()) }
