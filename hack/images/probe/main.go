// probe is the e2e suite's tool inside pods (images have no shell):
//
//	probe dns NAME       resolves NAME with the pod's resolver; prints the addresses, exit 0
//	probe nodns NAME     exit 0 only if NAME does NOT resolve (cluster DNS forwards nothing off the machine)
//	probe http URL       GET URL; prints the status line, exit 0 on a 2xx
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: probe dns|nodns|http ARG")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	arg := os.Args[2]
	switch os.Args[1] {
	case "dns":
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(addrs, " "))
	case "nodns":
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err == nil {
			fmt.Println("resolved:", strings.Join(addrs, " "))
			os.Exit(1)
		}
		fmt.Println("not resolved:", err)
	case "http":
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, arg, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
		if resp.StatusCode/100 != 2 {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
}
