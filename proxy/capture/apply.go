package capture

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Conn opens a netlink connection to nftables in the current network
// namespace, or in the one behind netnsFd when it is > 0.
func Conn(netnsFd int) (*nftables.Conn, error) {
	if netnsFd > 0 {
		return nftables.New(nftables.WithNetNSFd(netnsFd))
	}
	return nftables.New()
}

func tableFamily(f Family) nftables.TableFamily {
	if f == IPv6 {
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyIPv4
}

func hook(ch Chain) *nftables.ChainHook {
	if ch == Prerouting {
		return nftables.ChainHookPrerouting
	}
	return nftables.ChainHookOutput
}

// Apply replaces knit's tables with rules in one netlink transaction: the
// tables are added (so the delete cannot fail), deleted and built again, so
// running it any number of times leaves exactly one copy, and a failure
// leaves the previous state.
func Apply(c *nftables.Conn, rules []Rule) error {
	accept := nftables.ChainPolicyAccept
	for _, fam := range []Family{IPv4, IPv6} {
		t := &nftables.Table{Name: TableName, Family: tableFamily(fam)}
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
		for _, ch := range []Chain{Prerouting, Output} {
			chain := c.AddChain(&nftables.Chain{Name: string(ch), Table: t, Type: nftables.ChainTypeNAT,
				Hooknum: hook(ch), Priority: nftables.ChainPriorityNATDest, Policy: &accept})
			for _, r := range rules {
				if r.Family != fam || r.Chain != ch {
					continue
				}
				c.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: Exprs(r),
					UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("writing nftables rules: %w", err)
	}
	return nil
}

// Verify reads knit's tables back and checks that they hold exactly rules,
// in order, and nothing else.
func Verify(c *nftables.Conn, rules []Rule) error {
	for _, fam := range []Family{IPv4, IPv6} {
		t, err := c.ListTableOfFamily(TableName, tableFamily(fam))
		if err != nil {
			return fmt.Errorf("%w: table %s %s: %v", ErrNotApplied, fam, TableName, err)
		}
		chains, err := c.ListChainsOfTableFamily(tableFamily(fam))
		if err != nil {
			return fmt.Errorf("listing chains: %w", err)
		}
		var names []string
		for _, ch := range chains {
			if ch.Table.Name == TableName {
				names = append(names, ch.Name)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{string(Output), string(Prerouting)}) {
			return fmt.Errorf("%w: table %s %s has chains %v", ErrNotApplied, fam, TableName, names)
		}
		for _, ch := range []Chain{Prerouting, Output} {
			got, err := c.GetRules(t, &nftables.Chain{Name: string(ch), Table: t})
			if err != nil {
				return fmt.Errorf("listing rules of %s %s %s: %w", fam, TableName, ch, err)
			}
			var want []Rule
			for _, r := range rules {
				if r.Family == fam && r.Chain == ch {
					want = append(want, r)
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("%w: chain %s %s %s has %d rules, want %d", ErrNotApplied, fam, TableName, ch, len(got), len(want))
			}
			for i, r := range want {
				comment, _ := userdata.GetString(got[i].UserData, userdata.TypeComment)
				if comment != r.String() || len(got[i].Exprs) != len(Exprs(r)) {
					return fmt.Errorf("%w: chain %s %s %s rule %d is %q (%d expressions), want %q", ErrNotApplied,
						fam, TableName, ch, i, comment, len(got[i].Exprs), r.String())
				}
			}
		}
	}
	return nil
}

// Remove deletes knit's tables (absent ones are fine).
func Remove(c *nftables.Conn) error {
	for _, fam := range []Family{IPv4, IPv6} {
		t := &nftables.Table{Name: TableName, Family: tableFamily(fam)}
		c.AddTable(t)
		c.DelTable(t)
	}
	return c.Flush()
}

// Exprs is the rule as nftables expressions (what `nft` would generate).
func Exprs(r Rule) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	if r.SkUID != nil {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(*r.SkUID)})
	}
	if r.DstNet != nil {
		offset, size := uint32(16), 4 // IPv4 header: daddr
		if r.Family == IPv6 {
			offset, size = 24, 16
		}
		addr := r.DstNet.Masked().Addr().AsSlice()
		e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(size)})
		if bits := r.DstNet.Bits(); bits < size*8 {
			mask := make([]byte, size)
			for i := range bits {
				mask[i/8] |= 0x80 >> (i % 8)
			}
			e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(size), Mask: mask, Xor: make([]byte, size)})
		}
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
	}
	if r.DstPort != 0 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.DstPort)})
	}
	if r.RedirectTo != 0 {
		return append(e,
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(r.RedirectTo)},
			&expr.Redir{RegisterProtoMin: 1})
	}
	return append(e, &expr.Verdict{Kind: expr.VerdictReturn})
}
