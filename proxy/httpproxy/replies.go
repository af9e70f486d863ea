package httpproxy

import "net/http"

// GRPCStatusFor is the gRPC status a gRPC client is told for an answer the proxy gives itself
// with this HTTP status.
func GRPCStatusFor(code int) int {
	switch code {
	case http.StatusNotFound:
		return 12 // UNIMPLEMENTED
	case http.StatusGatewayTimeout:
		return 4 // DEADLINE_EXCEEDED
	case http.StatusBadRequest:
		return 13 // INTERNAL, as gRPC maps HTTP 400
	case 499:
		return 1 // CANCELLED
	}
	return 14 // UNAVAILABLE
}
