package capture

import (
	"io"
	"strings"
	"testing"
)

func TestParseFlagsNamesTheBadFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--inbound-port=0"}, `--inbound-port: "0" is not a port`},
		{[]string{"--outbound-port=http"}, `--outbound-port: "http" is not a port`},
		{[]string{"--exclude-inbound-ports=15020,70000"}, `--exclude-inbound-ports: "70000" is not a port`},
		{[]string{"--exclude-outbound-ports=x"}, `--exclude-outbound-ports: "x" is not a port`},
		{[]string{"--exclude-outbound-cidrs=10.0.0.0/8,10.1.2.3/33"}, `--exclude-outbound-cidrs: "10.1.2.3/33" is not a CIDR`},
		{[]string{"--proxy-uid=-1"}, `--proxy-uid: -1 is not a UID`},
		{[]string{"--inbound-port=15001"}, `--inbound-port and --outbound-port are both 15001`},
		{[]string{"--bogus"}, `flag provided but not defined: -bogus`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, err := ParseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}

// The arguments exactly as the injector writes them (webhooks/injection).
func TestParseFlagsFromInjector(t *testing.T) {
	o, err := ParseFlags([]string{"--proxy-uid=1337", "--inbound-port=15006", "--outbound-port=15001",
		"--exclude-inbound-ports=15020,8081", "--exclude-outbound-ports=5432", "--exclude-outbound-cidrs=10.0.0.1/8,fd00::/8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.ProxyUID != 1337 || o.InboundPort != 15006 || o.OutboundPort != 15001 || len(o.ExcludeInboundPorts) != 2 ||
		o.ExcludeOutboundPorts[0] != 5432 || o.ExcludeOutboundCIDRs[0].String() != "10.0.0.0/8" || o.DryRun {
		t.Fatalf("%+v", o)
	}
}

func TestPlan(t *testing.T) {
	o, err := ParseFlags([]string{"--exclude-inbound-ports=15020", "--exclude-outbound-ports=5432",
		"--exclude-outbound-cidrs=10.96.0.0/12,fd00::/8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range Plan(o) {
		got = append(got, string(r.Family)+" "+string(r.Chain)+": "+r.String())
	}
	want := []string{
		"ip prerouting: meta l4proto tcp tcp dport 15020 return",
		"ip prerouting: meta l4proto tcp redirect to :15006",
		"ip output: meta l4proto tcp meta skuid 1337 return",
		"ip output: meta l4proto tcp ip daddr 127.0.0.0/8 return",
		"ip output: meta l4proto tcp tcp dport 5432 return",
		"ip output: meta l4proto tcp ip daddr 10.96.0.0/12 return",
		"ip output: meta l4proto tcp redirect to :15001",
		"ip6 prerouting: meta l4proto tcp tcp dport 15020 return",
		"ip6 prerouting: meta l4proto tcp redirect to :15006",
		"ip6 output: meta l4proto tcp meta skuid 1337 return",
		"ip6 output: meta l4proto tcp ip6 daddr ::1 return",
		"ip6 output: meta l4proto tcp tcp dport 5432 return",
		"ip6 output: meta l4proto tcp ip6 daddr fd00::/8 return",
		"ip6 output: meta l4proto tcp redirect to :15001",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s := Script(Plan(o))
	for _, frag := range []string{"add table ip knit\ndelete table ip knit\ntable ip knit {", "type nat hook output priority dstnat; policy accept;", "\t\tmeta l4proto tcp redirect to :15001\n"} {
		if !strings.Contains(s, frag) {
			t.Errorf("script lacks %q:\n%s", frag, s)
		}
	}
}

func TestExprsPrefixMask(t *testing.T) {
	o, _ := ParseFlags([]string{"--exclude-outbound-cidrs=10.96.0.0/12,192.168.1.7/32"}, io.Discard)
	var n12, n32 int
	for _, r := range Plan(o) {
		if r.DstNet == nil || r.Family != IPv4 {
			continue
		}
		switch r.DstNet.Bits() {
		case 12:
			n12 = len(Exprs(r))
		case 32:
			n32 = len(Exprs(r))
		}
	}
	// l4proto (2) + payload + [bitwise] + cmp + verdict
	if n12 != 6 || n32 != 5 {
		t.Fatalf("expressions: /12 %d (want 6), /32 %d (want 5)", n12, n32)
	}
}
