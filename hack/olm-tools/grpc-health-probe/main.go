// Command grpc_health_probe answers the exec probes OLM gives every catalog pod
// (`grpc_health_probe -addr=:50051 -rpc-timeout=5s`): exit 0 when the gRPC health service at
// addr reports SERVING. knit's own small version, built with the rest of OLM (hack/build-olm.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	addr := flag.String("addr", "", "host:port of the gRPC server (:port means localhost)")
	timeout := flag.Duration("rpc-timeout", time.Second, "timeout of the health RPC")
	flag.Parse()
	target := *addr
	if strings.HasPrefix(target, ":") {
		target = "127.0.0.1" + target
	}
	if target == "" {
		fmt.Fprintln(os.Stderr, "grpc_health_probe: -addr is required")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc_health_probe:", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc_health_probe: health check of", target, "failed:", err)
		os.Exit(1)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		fmt.Fprintln(os.Stderr, "grpc_health_probe:", target, "is", resp.GetStatus())
		os.Exit(1)
	}
	fmt.Println("status: SERVING")
}
