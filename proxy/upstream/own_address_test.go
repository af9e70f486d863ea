package upstream

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/knit-mesh/knit/proxy/config"
)

// alwaysMTLS is a MeshTLS that always has a certificate; the test only reads which endpoints
// the cluster marks for mutual TLS, it never dials.
type alwaysMTLS struct{}

func (alwaysMTLS) Use() (uint64, bool, error) { return 1, false, nil }
func (alwaysMTLS) Client(_ context.Context, conn net.Conn, _ string, _ bool) (net.Conn, error) {
	return conn, nil
}

func TestAMeshedEndpointAtThePodsOwnAddressIsReachedInPlaintext(t *testing.T) {
	var own netip.Addr
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() && p.Addr().Is4() {
			own = p.Addr()
			break
		}
	}
	if !own.IsValid() {
		t.Fatal("this machine has no non-loopback IPv4 address to stand for the pod's own")
	}
	const id = "spiffe://cluster.local/ns/shop/sa/cart"
	c, err := New(config.Cluster{Name: "cart"}, []config.Endpoint{
		{Address: netip.AddrPortFrom(own, 8080).String(), Meshed: true, Identity: id},
		{Address: "192.0.2.10:8080", Meshed: true, Identity: id},
	}, nil, alwaysMTLS{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Endpoints[0].Identity; got != "" {
		t.Errorf("the pod's own address %s is reached over mutual TLS (identity %q): the app itself would get the handshake", own, got)
	}
	if got := c.Endpoints[1].Identity; got != id {
		t.Errorf("another pod's endpoint: identity %q, want %q", got, id)
	}
}
