// Package capture computes and programs the netfilter rules that send a
// pod's TCP traffic through knit-proxy: inbound connections are redirected
// to the inbound port, outbound ones to the outbound port. The rules are data
// (Plan, a pure function of Options) used both by `knit-proxy init
// --dry-run`, which prints them, and by Apply, which writes them with
// nftables over netlink (the init image holds no iptables or nft binary).
package capture

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// TableName is knit's own table, in the ip and the ip6 family; nothing else
// in the network namespace is touched.
const TableName = "knit"

// Options are the flags of `knit-proxy init`.
type Options struct {
	ProxyUID             uint32
	InboundPort          uint16
	OutboundPort         uint16
	ExcludeInboundPorts  []uint16
	ExcludeOutboundPorts []uint16
	ExcludeOutboundCIDRs []netip.Prefix
	DryRun               bool
}

// ParseFlags parses the arguments of `knit-proxy init`. Errors name the flag.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uid := fs.Int64("proxy-uid", 1337, "UID the proxy runs as; its own traffic is never captured")
	in := fs.String("inbound-port", "15006", "port the proxy's inbound listener is bound to")
	out := fs.String("outbound-port", "15001", "port the proxy's outbound listener is bound to")
	exIn := fs.String("exclude-inbound-ports", "", "comma-separated inbound ports that are not captured")
	exOut := fs.String("exclude-outbound-ports", "", "comma-separated outbound destination ports that are not captured")
	exCIDR := fs.String("exclude-outbound-cidrs", "", "comma-separated outbound destination CIDRs that are not captured")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the rules and change nothing")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *uid < 0 || *uid > 1<<32-2 {
		return o, fmt.Errorf("--proxy-uid: %d is not a UID", *uid)
	}
	o.ProxyUID = uint32(*uid)
	var err error
	if o.InboundPort, err = parsePort("--inbound-port", *in); err != nil {
		return o, err
	}
	if o.OutboundPort, err = parsePort("--outbound-port", *out); err != nil {
		return o, err
	}
	if o.InboundPort == o.OutboundPort {
		return o, fmt.Errorf("--inbound-port and --outbound-port are both %d", o.InboundPort)
	}
	if o.ExcludeInboundPorts, err = parsePorts("--exclude-inbound-ports", *exIn); err != nil {
		return o, err
	}
	if o.ExcludeOutboundPorts, err = parsePorts("--exclude-outbound-ports", *exOut); err != nil {
		return o, err
	}
	for _, s := range splitList(*exCIDR) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return o, fmt.Errorf("--exclude-outbound-cidrs: %q is not a CIDR such as 10.0.0.0/8 or fd00::/8", s)
		}
		o.ExcludeOutboundCIDRs = append(o.ExcludeOutboundCIDRs, p.Masked())
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parsePort(flagName, s string) (uint16, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s: %q is not a port between 1 and 65535", flagName, s)
	}
	return uint16(p), nil
}

func parsePorts(flagName, s string) ([]uint16, error) {
	var out []uint16
	for _, item := range splitList(s) {
		p, err := parsePort(flagName, item)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Family is a netfilter table family.
type Family string

const (
	IPv4 Family = "ip"
	IPv6 Family = "ip6"
)

// Chain is one of the two base chains of knit's table.
type Chain string

const (
	// Prerouting (nat, dstnat priority) sees connections arriving from outside the pod.
	Prerouting Chain = "prerouting"
	// Output (nat, dstnat priority) sees connections the pod's processes open.
	Output Chain = "output"
)

// Rule is one netfilter rule: all set matches must hold (every rule also
// matches TCP only), then the verdict applies.
type Rule struct {
	Family Family
	Chain  Chain
	// Matches; zero values match anything.
	SkUID   *uint32       // meta skuid
	DstPort uint16        // tcp dport
	DstNet  *netip.Prefix // ip daddr / ip6 daddr
	// Verdict: return (leave the packet alone) unless RedirectTo is set.
	RedirectTo uint16
}

// String renders the rule in nft syntax (for --dry-run and the rule comment).
func (r Rule) String() string {
	parts := []string{"meta l4proto tcp"}
	if r.SkUID != nil {
		parts = append(parts, "meta skuid "+strconv.FormatUint(uint64(*r.SkUID), 10))
	}
	if r.DstNet != nil {
		parts = append(parts, string(r.Family)+" daddr "+prefixString(*r.DstNet))
	}
	if r.DstPort != 0 {
		parts = append(parts, "tcp dport "+strconv.Itoa(int(r.DstPort)))
	}
	if r.RedirectTo != 0 {
		parts = append(parts, "redirect to :"+strconv.Itoa(int(r.RedirectTo)))
	} else {
		parts = append(parts, "return")
	}
	return strings.Join(parts, " ")
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

var loopback = map[Family]netip.Prefix{
	IPv4: netip.MustParsePrefix("127.0.0.0/8"),
	IPv6: netip.MustParsePrefix("::1/128"),
}

// Plan is the complete rule list for o, in chain order, for both families.
func Plan(o Options) []Rule {
	var rules []Rule
	for _, fam := range []Family{IPv4, IPv6} {
		// Inbound: every TCP connection to the pod goes to the inbound
		// listener, except the excluded ports (the proxy's admin port is one).
		for _, p := range o.ExcludeInboundPorts {
			rules = append(rules, Rule{Family: fam, Chain: Prerouting, DstPort: p})
		}
		rules = append(rules, Rule{Family: fam, Chain: Prerouting, RedirectTo: o.InboundPort})

		// Outbound: the proxy's own connections (it forwards to the
		// original destinations) and traffic to loopback addresses (app to
		// itself, sidecars talking over localhost) are left alone.
		uid := o.ProxyUID
		lo := loopback[fam]
		rules = append(rules,
			Rule{Family: fam, Chain: Output, SkUID: &uid},
			Rule{Family: fam, Chain: Output, DstNet: &lo},
		)
		for _, p := range o.ExcludeOutboundPorts {
			rules = append(rules, Rule{Family: fam, Chain: Output, DstPort: p})
		}
		for _, c := range o.ExcludeOutboundCIDRs {
			if (fam == IPv4) != c.Addr().Is4() {
				continue
			}
			c := c
			rules = append(rules, Rule{Family: fam, Chain: Output, DstNet: &c})
		}
		rules = append(rules, Rule{Family: fam, Chain: Output, RedirectTo: o.OutboundPort})
	}
	return rules
}

// Script renders the plan as an nft script equivalent to what Apply writes
// (`nft -f` accepts it): the table is deleted and re-created, so applying it
// twice leaves one copy.
func Script(rules []Rule) string {
	var b strings.Builder
	for _, fam := range []Family{IPv4, IPv6} {
		fmt.Fprintf(&b, "add table %s %s\ndelete table %s %s\ntable %s %s {\n", fam, TableName, fam, TableName, fam, TableName)
		for _, ch := range []Chain{Prerouting, Output} {
			fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority dstnat; policy accept;\n", ch, ch)
			for _, r := range rules {
				if r.Family == fam && r.Chain == ch {
					fmt.Fprintf(&b, "\t\t%s\n", r)
				}
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// ErrNotApplied is returned by Verify when the table is missing or differs.
var ErrNotApplied = errors.New("capture rules not in place")
