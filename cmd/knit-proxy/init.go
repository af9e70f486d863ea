package main

import (
	"fmt"
	"io"

	"github.com/knit-mesh/knit/proxy/capture"
)

// runInit is `knit-proxy init`: write the traffic-capture rules into the
// current network namespace (the pod's), then read them back. --dry-run only
// prints them. Exit codes: 0 done, 1 failed, 2 bad flags.
func runInit(args []string, stdout, stderr io.Writer) int {
	o, err := capture.ParseFlags(args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "knit-proxy init:", err)
		return 2
	}
	rules := capture.Plan(o)
	if o.DryRun {
		fmt.Fprint(stdout, capture.Script(rules))
		return 0
	}
	c, err := capture.Conn(0)
	if err != nil {
		fmt.Fprintln(stderr, "knit-proxy init: netlink:", err)
		return 1
	}
	if err := capture.Apply(c, rules); err != nil {
		fmt.Fprintln(stderr, "knit-proxy init:", err, "(needs NET_ADMIN in the pod's network namespace)")
		return 1
	}
	if err := capture.Verify(c, rules); err != nil {
		fmt.Fprintln(stderr, "knit-proxy init: the rules did not take:", err)
		return 1
	}
	fmt.Fprintf(stdout, "knit-proxy init: %d capture rules in place (tables ip %s, ip6 %s)\n", len(rules), capture.TableName, capture.TableName)
	return 0
}
