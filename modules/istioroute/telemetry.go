package istioroute

import (
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// This file holds the handler's telemetry, with Istio's names: the
// standard metrics (istio_requests_total and the duration and size
// histograms, with Istio's labels), Envoy's response flags and access log
// fields, and the x-request-id header.

// responseFlags is a set of Envoy's response flags, which say why a
// request did not get a plain upstream response.
type responseFlags uint32

// The flags this handler sets, in the order of Envoy's ResponseFlag enum,
// which is the order Envoy prints them in.
const (
	flagNoHealthyUpstream               responseFlags = 1 << iota // UH
	flagUpstreamRequestTimeout                                    // UT
	flagUpstreamRemoteReset                                       // UR
	flagUpstreamConnectionFailure                                 // UF
	flagUpstreamConnectionTermination                             // UC
	flagUpstreamOverflow                                          // UO
	flagNoRouteFound                                              // NR
	flagDelayInjected                                             // DI
	flagFaultInjected                                             // FI
	flagDownstreamConnectionTermination                           // DC
	flagUpstreamRetryLimitExceeded                                // URX
	flagNoClusterFound                                            // NC
)

var responseFlagNames = [...]string{"UH", "UT", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "DC", "URX", "NC"}

// String prints the flags as Envoy's %RESPONSE_FLAGS%: comma-separated
// short names, "-" for none.
func (f responseFlags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, name := range responseFlagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
	}
	return b.String()
}

// Istio's label values.
const (
	reporterSource        = "source"
	labelUnknown          = "unknown"
	defaultClusterID      = "Kubernetes"
	defaultRevision       = "latest"
	protocolHTTP          = "http"
	protocolGRPC          = "grpc"
	defaultTrustDomain    = "cluster.local"
	canonicalNameLabel    = "service.istio.io/canonical-name"
	canonicalRevLabel     = "service.istio.io/canonical-revision"
	kubernetesNameLabel   = "app.kubernetes.io/name"
	kubernetesVerLabel    = "app.kubernetes.io/version"
	appLabel              = "app"
	versionLabel          = "version"
	requestIDHeader       = "X-Request-Id"
	envoyOverloadedHeader = "X-Envoy-Overloaded"
)

// istioLabels are the labels of Istio's standard HTTP metrics, in
// Istio's order.
var istioLabels = []string{
	"reporter",
	"source_workload", "source_canonical_service", "source_canonical_revision",
	"source_workload_namespace", "source_principal", "source_app", "source_version", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service",
	"destination_canonical_service", "destination_canonical_revision",
	"destination_service_name", "destination_service_namespace", "destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// istioMetrics are the process-wide collectors. Caddy's metrics registry
// is per configuration, so each configuration registers the same
// collectors again and the series carry on across reloads.
var istioMetrics = struct {
	once                                  sync.Once
	requests                              *prometheus.CounterVec
	duration, requestBytes, responseBytes *prometheus.HistogramVec
}{}

func initIstioMetrics() {
	istioMetrics.once.Do(func() {
		byteBuckets := []float64{1, 10, 100, 1000, 10000, 100000, 1e6, 1e7, 1e8, 1e9}
		istioMetrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Total requests.",
		}, istioLabels)
		istioMetrics.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds.",
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, istioLabels)
		istioMetrics.requestBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_bytes",
			Help:    "Request body size in bytes.",
			Buckets: byteBuckets,
		}, istioLabels)
		istioMetrics.responseBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_response_bytes",
			Help:    "Response body size in bytes.",
			Buckets: byteBuckets,
		}, istioLabels)
	})
}

// registerIstioMetrics adds the collectors to a configuration's registry;
// a second handler of the same configuration finds them there already.
func registerIstioMetrics(reg prometheus.Registerer) error {
	initIstioMetrics()
	for _, c := range []prometheus.Collector{istioMetrics.requests, istioMetrics.duration, istioMetrics.requestBytes, istioMetrics.responseBytes} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// telemetry is the handler's compiled telemetry configuration.
type telemetry struct {
	metrics  bool
	reporter string
	// source holds the source_* label values, in istioLabels order.
	source      [8]string
	clusterID   string
	trustDomain string

	// series caches the metrics of each label combination seen, so a
	// request does not hash its 25 label values. The map is never changed
	// once stored: a new combination, rare after warm-up, stores a copy
	// under mu, so a request reads it without a lock.
	mu     sync.Mutex
	series atomic.Pointer[map[seriesKey]*seriesMetrics]
}

// destinationTelemetry is what the metrics labels need to know of a
// destination cluster.
type destinationTelemetry struct {
	service, serviceName, serviceNamespace string
	istioMutual                            bool
}

// seriesKey identifies one label combination.
type seriesKey struct {
	d          *destination
	endpoint   *istioapp.Workload
	code       int
	flags      responseFlags
	grpc       bool
	grpcStatus string
}

type seriesMetrics struct {
	requests                              prometheus.Counter
	duration, requestBytes, responseBytes prometheus.Observer
}

// compileTelemetry prepares the labels of this proxy from the mesh
// configuration of the istio app (nil: the defaults).
func compileTelemetry(ctx caddy.Context, cfg *Telemetry, app *istioapp.App) (*telemetry, error) {
	if cfg == nil {
		cfg = new(Telemetry)
	}
	t := &telemetry{metrics: !cfg.Disabled, reporter: cfg.Reporter, clusterID: cfg.ClusterID}
	if t.reporter == "" {
		t.reporter = reporterSource
	}
	if t.reporter != reporterSource {
		return nil, errors.New(`telemetry: reporter must be "source"`)
	}
	if t.clusterID == "" {
		t.clusterID = defaultClusterID
	}
	var mesh istioapp.Mesh
	if app != nil && app.Mesh != nil {
		mesh = *app.Mesh
	}
	t.trustDomain = orString(mesh.TrustDomain, defaultTrustDomain)
	identity := mesh.Identity
	if identity == "" {
		identity = "spiffe://" + t.trustDomain + "/ns/default/sa/default"
	}
	namespace := labelUnknown
	if _, rest, ok := strings.Cut(identity, "/ns/"); ok {
		namespace, _, _ = strings.Cut(rest, "/")
	}
	workload := cfg.SourceWorkload
	if workload == "" {
		workload = canonicalService(mesh.Labels, labelUnknown)
	}
	t.source = [8]string{
		workload,
		canonicalService(mesh.Labels, workload),
		canonicalRevision(mesh.Labels),
		orString(namespace, labelUnknown),
		identity,
		orString(mesh.Labels[appLabel], labelUnknown),
		orString(mesh.Labels[versionLabel], labelUnknown),
		t.clusterID,
	}
	if t.metrics {
		if err := registerIstioMetrics(ctx.GetMetricsRegistry()); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// destinationTelemetryOf derives the service labels of a cluster from the
// istio app's configuration, or from the cluster name alone
// (outbound|PORT|SUBSET|HOST) when the app does not have it.
func destinationTelemetryOf(clusterName string, app *istioapp.App) *destinationTelemetry {
	dt := &destinationTelemetry{service: labelUnknown, serviceNamespace: labelUnknown}
	if parts := strings.SplitN(clusterName, "|", 4); len(parts) == 4 && parts[3] != "" {
		dt.service = parts[3]
	}
	if app != nil {
		for _, c := range app.Clusters {
			if c != nil && c.Name == clusterName {
				dt.service = c.Service
				dt.istioMutual = c.TLS != nil && c.TLS.IstioMutual
				break
			}
		}
		for _, s := range app.Services {
			if s != nil && s.Hostname == dt.service && s.Namespace != "" {
				dt.serviceNamespace = s.Namespace
				break
			}
		}
	}
	// Istio's destination_service_name is the Kubernetes Service name,
	// and the whole host for other services.
	dt.serviceName = dt.service
	if name, rest, ok := strings.Cut(dt.service, "."); ok && strings.HasPrefix(rest, dt.serviceNamespace+".svc.") {
		dt.serviceName = name
	}
	return dt
}

// canonicalService is Istio's canonical service of a workload's labels.
func canonicalService(labels map[string]string, fallback string) string {
	for _, k := range []string{canonicalNameLabel, kubernetesNameLabel, appLabel} {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return fallback
}

// canonicalRevision is Istio's canonical revision of a workload's labels.
func canonicalRevision(labels map[string]string) string {
	for _, k := range []string{canonicalRevLabel, kubernetesVerLabel, versionLabel} {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return defaultRevision
}

func orString(s, fallback string) string {
	if s != "" {
		return s
	}
	return fallback
}

// metricsFor returns the metrics of a label combination, creating them
// the first time.
func (t *telemetry) metricsFor(k seriesKey) *seriesMetrics {
	if series := t.series.Load(); series != nil {
		if m := (*series)[k]; m != nil {
			return m
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var old map[seriesKey]*seriesMetrics
	if series := t.series.Load(); series != nil {
		old = *series
	}
	if m := old[k]; m != nil {
		return m
	}
	values := t.labelValues(k)
	m := &seriesMetrics{
		requests:      istioMetrics.requests.WithLabelValues(values...),
		duration:      istioMetrics.duration.WithLabelValues(values...),
		requestBytes:  istioMetrics.requestBytes.WithLabelValues(values...),
		responseBytes: istioMetrics.responseBytes.WithLabelValues(values...),
	}
	series := make(map[seriesKey]*seriesMetrics, len(old)+1)
	maps.Copy(series, old)
	series[k] = m
	t.series.Store(&series)
	return m
}

// labelValues are the values of istioLabels for k.
func (t *telemetry) labelValues(k seriesKey) []string {
	v := make([]string, 0, len(istioLabels))
	v = append(v, t.reporter)
	v = append(v, t.source[:]...)
	destWorkload, destNamespace, destPrincipal := labelUnknown, labelUnknown, labelUnknown
	destApp, destVersion := labelUnknown, labelUnknown
	destCanonical, destRevision := labelUnknown, defaultRevision
	service, serviceName, serviceNamespace := labelUnknown, labelUnknown, labelUnknown
	destCluster := labelUnknown
	mutual := false
	if k.d != nil {
		dt := k.d.telemetry
		service, serviceName, serviceNamespace = dt.service, dt.serviceName, dt.serviceNamespace
		mutual = dt.istioMutual
	}
	if ep := k.endpoint; ep != nil {
		destWorkload = orString(ep.Name, canonicalService(ep.Labels, labelUnknown))
		destNamespace = orString(ep.Namespace, serviceNamespace)
		destApp = orString(ep.Labels[appLabel], labelUnknown)
		destVersion = orString(ep.Labels[versionLabel], labelUnknown)
		destCanonical = canonicalService(ep.Labels, destWorkload)
		destRevision = canonicalRevision(ep.Labels)
		destCluster = t.clusterID
		if mutual && ep.ServiceAccount != "" {
			destPrincipal = "spiffe://" + t.trustDomain + "/ns/" + destNamespace + "/sa/" + ep.ServiceAccount
		}
	}
	if !mutual {
		// without mesh TLS the upstream learns no principal of this proxy
		v[5] = labelUnknown
	}
	v = append(v, destWorkload, destNamespace, destPrincipal, destApp, destVersion, service,
		destCanonical, destRevision, serviceName, serviceNamespace, destCluster)
	protocol := protocolHTTP
	if k.grpc {
		protocol = protocolGRPC
	}
	// Istio reports the security policy from the destination only; the
	// source reports "unknown".
	v = append(v, protocol, strconv.Itoa(k.code), k.grpcStatus, k.flags.String(), labelUnknown)
	return v
}

// requestTelemetry follows one request through the handler: what was
// decided, what happened, and the response as it was written.
type requestTelemetry struct {
	start    time.Time
	vh       *virtualHost
	rt       *route
	matched  *match // the match alternative that held, nil for none
	d        *destination
	flags    responseFlags
	attempts int
	rec      statusRecorder
	// repl is the request's replacer once looked up (see replacer).
	repl *caddy.Replacer
}

// replacer returns the replacer of r, the request that t follows, looking
// it up in the context chain only once per request.
func (t *requestTelemetry) replacer(r *http.Request) *caddy.Replacer {
	if t.repl == nil {
		t.repl, _ = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	}
	return t.repl
}

var requestTelemetries = sync.Pool{New: func() any { return new(requestTelemetry) }}

// routed records the routing decision.
func (t *requestTelemetry) routed(vh *virtualHost, rt *route, d *destination) {
	if t != nil {
		t.vh, t.rt, t.d = vh, rt, d
	}
}

// set adds response flags.
func (t *requestTelemetry) set(f responseFlags) {
	if t != nil {
		t.flags |= f
	}
}

// attempt counts an upstream attempt.
func (t *requestTelemetry) attempt() {
	if t != nil {
		t.attempts++
	}
}

// statusRecorder notes the status and body size of the response.
type statusRecorder struct {
	caddyhttp.ResponseWriterWrapper
	status int
	bytes  int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom counts what the wrapped writer's ReadFrom copies.
func (w *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriterWrapper.ReadFrom(r)
	w.bytes += n
	return n, err
}

// ensureRequestID sets x-request-id to a new UUID (version 4) when the
// request has none, as Envoy does, so the upstream and the logs share it.
func ensureRequestID(r *http.Request) string {
	if id := r.Header.Get(requestIDHeader); id != "" {
		return id
	}
	v := newRequestIDValue()
	r.Header[requestIDHeader] = v
	return v[0]
}

// requestIDValue holds a header value and its text in one allocation.
type requestIDValue struct {
	value [1]string
	text  [36]byte
}

// newRequestIDValue returns a header value holding a new random (version
// 4) UUID. The bits come from the runtime's per-thread ChaCha8 generator,
// seeded from the OS (math/rand/v2), as Envoy draws its request IDs from
// its own random generator: no system call and no lock per request.
func newRequestIDValue() []string {
	v := new(requestIDValue)
	formatUUID(&v.text, rand.Uint64(), rand.Uint64())
	// text is never written again, so the string may share it.
	v.value[0] = unsafe.String(&v.text[0], len(v.text))
	return v.value[:]
}

// formatUUID writes the version 4 UUID of the random bits hi and lo into s.
func formatUUID(s *[36]byte, hi, lo uint64) {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], hi)
	binary.BigEndian.PutUint64(u[8:], lo)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[b>>4], hexDigits[b&0x0f]
		j += 2
	}
}

// startTelemetry begins following a request.
func startTelemetry(w http.ResponseWriter) *requestTelemetry {
	t := requestTelemetries.Get().(*requestTelemetry)
	t.start = time.Now()
	t.rec.ResponseWriter = w
	return t
}

// finishTelemetry records the request's metrics and access log fields
// once the handler is done; err is what the handler returns.
func (h *Handler) finishTelemetry(t *requestTelemetry, r *http.Request, requestID string, err error) {
	// The status written, else the one Caddy writes for the error.
	code := t.rec.status
	if err != nil {
		if code == 0 {
			var he caddyhttp.HandlerError
			code = http.StatusInternalServerError
			if errors.As(err, &he) && he.StatusCode != 0 {
				code = he.StatusCode
			}
		}
		if errors.Is(err, errNoRoute) || errors.Is(err, errNoVirtualHost) {
			t.flags |= flagNoRouteFound
		}
	} else if code == 0 {
		code = http.StatusOK
	}
	if t.rec.status == 0 && (code == 499 || r.Context().Err() != nil) {
		// the client went away before the response: Envoy reports no code
		t.flags |= flagDownstreamConnectionTermination
		code = 0
	}
	header := t.rec.Header()
	if code == http.StatusServiceUnavailable && t.attempts > 0 {
		if _, ok := header[envoyOverloadedHeader]; ok {
			t.flags |= flagUpstreamOverflow // a circuit breaker of the cluster
		}
	}

	var upstreamHost string
	var endpoint *istioapp.Workload
	if t.attempts > 0 && t.d != nil {
		if repl := t.replacer(r); repl != nil {
			upstreamHost, _ = repl.GetString(upstreamHostportPlaceholder)
		}
		endpoint = t.d.handler.Endpoint(upstreamHost)
	}

	if h.telemetry.metrics {
		grpc := strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc")
		var grpcStatus string
		if grpc {
			grpcStatus = header.Get("Grpc-Status")
			if grpcStatus == "" {
				grpcStatus = header.Get(http.TrailerPrefix + "Grpc-Status")
			}
		}
		m := h.telemetry.metricsFor(seriesKey{
			d: t.d, endpoint: endpoint, code: code, flags: t.flags,
			grpc: grpc, grpcStatus: grpcStatus,
		})
		m.requests.Inc()
		m.duration.Observe(float64(time.Since(t.start)) / float64(time.Millisecond))
		m.requestBytes.Observe(float64(max(r.ContentLength, 0)))
		m.responseBytes.Observe(float64(t.rec.bytes))
	}

	if t.matched != nil && t.matched.stats != nil {
		t.matched.stats.record(t.attempts, code, t.flags&flagUpstreamRequestTimeout != 0, time.Since(t.start))
	}

	if !accessLogged(r) {
		return
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		f := &accessLogFields{requestID: requestID, flags: t.flags, retries: max(t.attempts-1, 0), upstreamHost: upstreamHost}
		if t.rt != nil {
			f.route, f.virtualService = t.rt.name, t.rt.virtualService
		}
		if t.d != nil {
			f.cluster = t.d.cluster
		}
		extra.Add(zap.Inline(f))
	}
}

// accessLogged reports whether the request's server writes access logs,
// which the handler's log fields are for; without them the fields would
// cost allocations for nothing.
func accessLogged(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || srv.Logs != nil
}

// releaseTelemetry returns t to its pool.
func releaseTelemetry(t *requestTelemetry) {
	*t = requestTelemetry{}
	requestTelemetries.Put(t)
}

// accessLogFields are the fields the handler adds to the access log, with
// the names of Istio's JSON access log.
type accessLogFields struct {
	route, virtualService, cluster, upstreamHost, requestID string
	flags                                                   responseFlags
	retries                                                 int
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (f *accessLogFields) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if f.route != "" {
		enc.AddString("route_name", f.route)
	}
	if f.virtualService != "" {
		enc.AddString("virtual_service", f.virtualService)
	}
	if f.cluster != "" {
		enc.AddString("upstream_cluster", f.cluster)
	}
	if f.upstreamHost != "" {
		enc.AddString("upstream_host", f.upstreamHost)
	}
	enc.AddInt("retry_count", f.retries)
	enc.AddString("response_flags", f.flags.String())
	enc.AddString("request_id", f.requestID)
	return nil
}

// Interface guards
var (
	_ http.ResponseWriter     = (*statusRecorder)(nil)
	_ io.ReaderFrom           = (*statusRecorder)(nil)
	_ zapcore.ObjectMarshaler = (*accessLogFields)(nil)
)
