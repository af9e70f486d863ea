package passthrough

import (
	"net/netip"
	"testing"
)

func TestLoopsOnlyWhenTheDestinationReachesTheListener(t *testing.T) {
	all := netip.MustParseAddrPort("0.0.0.0:15001")
	lo := netip.MustParseAddrPort("127.0.0.1:15001")
	for _, tc := range []struct {
		dst, self string
		loops     bool
	}{
		{"127.0.0.1:15001", all.String(), true},
		{"127.0.0.2:15001", all.String(), true}, // loopback reaches a listener on all addresses
		{"0.0.0.0:15001", all.String(), true},
		{"[::1]:15001", "[::]:15001", true},
		{"192.0.2.10:15001", all.String(), false}, // a remote host on the same port (TEST-NET-1, not local)
		{"127.0.0.1:8080", all.String(), false},
		{"127.0.0.1:15001", lo.String(), true},
		{"127.0.0.2:15001", lo.String(), false},
	} {
		if got := Loops(netip.MustParseAddrPort(tc.dst), netip.MustParseAddrPort(tc.self)); got != tc.loops {
			t.Errorf("Loops(%s, listener %s) = %v, want %v", tc.dst, tc.self, got, tc.loops)
		}
	}
}
