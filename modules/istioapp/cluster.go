package istioapp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istiolb"
)

// ClusterHandler is a provisioned cluster: the registry endpoints of one
// service port and subset, and the reverse_proxy handler that balances
// requests over them with the cluster's traffic policy.
type ClusterHandler struct {
	name      string
	upstreams *endpointSet
	proxy     *reverseproxy.Handler

	// transport wraps the proxy's transport with the circuit breakers and
	// outlier detection; nil when the cluster has neither.
	transport *clusterTransport

	// retryCap returns how many retries may be in progress now; nil: no
	// cap. retries counts those in progress.
	retryCap func() int64
	retries  atomic.Int64

	// lease holds the cluster's runtime state across reloads.
	lease *stateLease
}

// AdmitRetry asks whether one more retry of a request to this cluster may
// start now. ok is false when the retries in progress are at the cap
// (ConnectionPool.MaxRetries, or the RetryBudget, which replaces it): the
// retry must not be made. When ok, done must be called once, when the
// retry attempt is over.
func (ch *ClusterHandler) AdmitRetry() (done func(), ok bool) {
	if ch.retryCap == nil {
		return func() {}, true
	}
	if n := ch.retries.Add(1); n > ch.retryCap() {
		ch.retries.Add(-1)
		return nil, false
	}
	var once sync.Once
	return func() { once.Do(func() { ch.retries.Add(-1) }) }, true
}

// retryCapOf returns the retry cap of c, nil for none. A budget allows
// max(MinRetryConcurrency, Percent% of the active requests).
func retryCapOf(c *Cluster, t *clusterTransport) func() int64 {
	if b := c.RetryBudget; b != nil {
		percent := float64(defaultRetryBudgetPercent)
		if b.Percent != nil {
			percent = max(*b.Percent, 0)
		}
		minimum := int64(b.MinRetryConcurrency)
		if minimum == 0 {
			minimum = defaultRetryBudgetMinConcurrency
		}
		return func() int64 {
			return max(minimum, int64(float64(t.activeRequests())*percent/100))
		}
	}
	if cp := c.ConnectionPool; cp != nil && cp.MaxRetries > 0 {
		limit := int64(cp.MaxRetries)
		return func() int64 { return limit }
	}
	return nil
}

// Retry budget defaults (Envoy's).
const (
	defaultRetryBudgetPercent        = 20
	defaultRetryBudgetMinConcurrency = 3
)

// Name returns the cluster name, e.g. outbound|9080|v1|reviews.default.svc.cluster.local.
func (ch *ClusterHandler) Name() string { return ch.name }

// ServeHTTP proxies the request to one of the cluster's endpoints. As
// reverse_proxy does, it returns a caddyhttp.HandlerError without writing a
// response when no endpoint is available (503) or none answers (502, 504).
func (ch *ClusterHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return ch.proxy.ServeHTTP(w, r, next)
}

// provisionCluster builds the endpoint set of c and provisions its
// reverse_proxy. The handler is provisioned here rather than loaded as a
// module so that its upstream source can be set directly: a source module
// that looked the istio app up while the app is provisioning would recurse.
func (a *App) provisionCluster(ctx caddy.Context, c *Cluster) (*ClusterHandler, error) {
	set, err := a.registry.clusterSet(c)
	if err != nil {
		return nil, err
	}
	proxy, err := decodeProxy(c.Proxy)
	if err != nil {
		return nil, err
	}
	proxy.DynamicUpstreams = set
	// ht is the proxy's HTTP transport; with UseClientProtocol, ht speaks
	// HTTP/1.1 and h2 HTTP/2
	var ht, h2 *reverseproxy.HTTPTransport
	if cp := c.ConnectionPool; cp != nil && cp.UseClientProtocol {
		ht, h2, err = loadClientProtocolTransports(ctx, proxy)
	} else {
		ht, err = loadHTTPTransport(ctx, proxy)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case h2 != nil:
		proxy.Transport = &clientProtocolTransport{http1: roundTripperOf(ht), http2: roundTripperOf(h2), ht: ht}
	case ht != nil:
		proxy.Transport = roundTripperOf(ht)
	}
	if err := proxy.Provision(ctx); err != nil {
		return nil, fmt.Errorf("provisioning reverse_proxy: %v", err)
	}
	LazyProxyLogFields(proxy)
	if ht == nil {
		// reverse_proxy's default transport, or another one
		ht, _ = proxy.Transport.(*reverseproxy.HTTPTransport)
	}
	addedAt, lease := acquireClusterState(c, set.dials, time.Now())
	ch := &ClusterHandler{name: c.Name, upstreams: set, proxy: proxy, lease: lease}
	a.provisioned = append(a.provisioned, ch)

	plan := planEndpoints(c.Locality, a.Mesh, set.dials, set.endpoints)
	if lease.outlier != nil || plan.priorities != nil || len(plan.excluded) > 0 {
		pool := &endpointPool{priorities: plan.priorities, outlier: lease.outlier}
		for _, dial := range set.dials {
			if !plan.excluded[dial] {
				pool.dials = append(pool.dials, dial)
			}
		}
		if c.OutlierDetection != nil {
			pool.minHealthPercent = c.OutlierDetection.MinHealthPercent
		}
		set.pool = pool
	}
	if proxy.LoadBalancing != nil {
		if setter, ok := proxy.LoadBalancing.SelectionPolicy.(istiolb.EndpointInfoSetter); ok {
			setter.SetEndpointInfo(&endpointInfo{weights: plan.weights, addedAt: addedAt})
		}
	}

	if err := a.wrapTransport(ctx, ch, c, ht, h2); err != nil {
		return nil, err
	}
	return ch, nil
}

// roundTripperOf is the reverse_proxy transport of ht.
func roundTripperOf(ht *reverseproxy.HTTPTransport) http.RoundTripper {
	if ht.TLS != nil {
		return newTLSTransport(ht)
	}
	return ht
}

// wrapTransport applies the cluster's connection pool, outlier detection,
// tunnel and upstream TLS to the provisioned reverse_proxy's transport; ht
// is the HTTP transport in it, nil for another kind, and h2 the HTTP/2
// one of a cluster with UseClientProtocol, nil otherwise.
func (a *App) wrapTransport(ctx caddy.Context, ch *ClusterHandler, c *Cluster, ht, h2 *reverseproxy.HTTPTransport) error {
	isHTTP := ht != nil
	if cp := c.ConnectionPool; cp != nil && cp.MaxConcurrentStreams > 0 {
		// Go's HTTP/2 client takes the stream limit of a connection from
		// the server's SETTINGS only; a lower one would need a connection
		// pool of our own in place of golang.org/x/net/http2's
		return fmt.Errorf("max_concurrent_streams: not supported: the HTTP/2 client has no client-side stream limit per connection")
	}
	needsHTTP := c.Tunnel != nil || c.TLS != nil ||
		(c.ConnectionPool != nil && (c.ConnectionPool.MaxRequestsPerConnection > 0 || c.ConnectionPool.MaxConnectionDuration > 0 ||
			c.ConnectionPool.TCPKeepalive != nil || c.ConnectionPool.HTTP2KeepAlive != nil))
	if needsHTTP && !isHTTP {
		return fmt.Errorf("tunnel, tls, keepalive and per-connection limits need the http transport")
	}
	http1 := true
	if isHTTP {
		http1 = !slices.Contains(ht.Versions, "h2c") && !(ht.TLS != nil && slices.Contains(ht.Versions, "2"))
	}
	// per-connection limits count the requests each connection gets
	// (httptrace GotConn, once per request, HTTP/2 streams included); a
	// request marked Close is the last of its connection, also in HTTP/2,
	// where Go's transport then opens no new stream on it
	limits := connLimitsOf(c.ConnectionPool)
	if h2 != nil {
		// HTTP/2 requests are multiplexed: the connection slots count the
		// HTTP/1.1 ones only (clusterTransport.clientProtocol)
		http1 = true
	}
	for _, tr := range []*reverseproxy.HTTPTransport{ht, h2} {
		if tr == nil {
			continue
		}
		if err := configureKeepalive(tr, c.ConnectionPool); err != nil {
			return err
		}
		if err := wrapDial(tr, c.Tunnel, limits); err != nil {
			return err
		}
		if err := a.configureUpstreamTLS(ctx, tr, c); err != nil {
			return fmt.Errorf("tls: %v", err)
		}
	}
	// a cluster without limits or outlier detection keeps the plain
	// transport, which costs nothing per request
	if c.ConnectionPool == nil && ch.lease.outlier == nil && c.RetryBudget == nil {
		return nil
	}
	t := newClusterTransport(ch.proxy.Transport, c, http1, ch.lease.outlier, limits)
	t.clientProtocol = h2 != nil
	ch.transport = t
	ch.proxy.Transport = t
	ch.retryCap = retryCapOf(c, t)
	return nil
}

// decodeProxy decodes a cluster's reverse_proxy configuration strictly. The
// upstreams belong to the registry, so the configuration may not set them.
func decodeProxy(raw json.RawMessage) (*reverseproxy.Handler, error) {
	proxy := new(reverseproxy.Handler)
	if len(raw) > 0 {
		if err := caddy.StrictUnmarshalJSON(raw, proxy); err != nil {
			return nil, fmt.Errorf("decoding proxy: %v", err)
		}
	}
	if len(proxy.Upstreams) > 0 {
		return nil, fmt.Errorf("proxy: upstreams are taken from the registry and must not be set")
	}
	if len(proxy.DynamicUpstreamsRaw) > 0 {
		return nil, fmt.Errorf("proxy: dynamic_upstreams are taken from the registry and must not be set")
	}
	return proxy, nil
}

// Interface guards
var _ caddyhttp.MiddlewareHandler = (*ClusterHandler)(nil)
