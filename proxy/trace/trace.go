// Package trace propagates W3C trace context and, when configured, exports
// one span per proxied request over OTLP/gRPC with the OpenTelemetry SDK.
// Without export the proxy forwards traceparent/tracestate untouched, which
// costs nothing on the request path.
package trace

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/knit-mesh/knit/proxy/config"
)

// Tracer makes spans for proxied requests. A nil *Tracer does nothing.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   oteltrace.Tracer
	prop     propagation.TraceContext
}

// New returns nil when export is not configured.
func New(ctx context.Context, cfg config.Tracing) (*Tracer, error) {
	if cfg.OTLPEndpoint == "" {
		return nil, nil
	}
	// The SDK dials lazily and retries in the background: a collector that is down costs
	// dropped spans, never a failed request.
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	return NewWithExporter(exp, cfg), nil
}

// NewWithExporter batches spans to exp (tests pass an in-memory exporter).
func NewWithExporter(exp sdktrace.SpanExporter, cfg config.Tracing) *Tracer {
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	ratio := 1.0
	if cfg.SamplingRatio != nil {
		ratio = *cfg.SamplingRatio
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return &Tracer{provider: tp, tracer: tp.Tracer("knit-proxy")}
}

// Start continues the caller's trace (or starts one), and rewrites the
// outgoing headers so the upstream sees the proxy's span as its parent.
func (t *Tracer) Start(ctx context.Context, r *http.Request, out http.Header, direction, route string) (context.Context, oteltrace.Span) {
	if t == nil {
		return ctx, nil
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	kind := oteltrace.SpanKindServer
	if direction == string(config.Outbound) {
		kind = oteltrace.SpanKindClient
	}
	ctx, span := t.tracer.Start(ctx, route, oteltrace.WithSpanKind(kind), oteltrace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("server.address", r.Host),
		attribute.String("knit.direction", direction),
	))
	t.prop.Inject(ctx, propagation.HeaderCarrier(out))
	return ctx, span
}

// End records the outcome and closes the span.
func End(span oteltrace.Span, status int, upstream string, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status), attribute.String("knit.upstream", upstream))
	if err != nil {
		span.RecordError(err)
	}
	if status >= 500 || err != nil {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// TraceID returns the trace id of the span, for access logs.
func TraceID(span oteltrace.Span) string {
	if span == nil {
		return ""
	}
	return span.SpanContext().TraceID().String()
}

// Shutdown flushes buffered spans.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Flush exports buffered spans now.
func (t *Tracer) Flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}
