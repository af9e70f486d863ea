// CoreDNS for the local cluster, built from the Go module proxy (github.com/coredns/coredns)
// with only the plugins the cluster's Corefile uses (config/coredns). There is deliberately no
// `forward` plugin: the cluster answers cluster.local and the reverse zones itself and never
// sends a query off the machine; any other name gets REFUSED/SERVFAIL.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
