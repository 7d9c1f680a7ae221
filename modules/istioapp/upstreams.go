package istioapp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

func init() {
	caddy.RegisterModule(Upstreams{})
}

// endpointSet is the upstream source of one cluster. Its dial addresses are
// computed once from the registry, so GetUpstreams only allocates the
// fresh Upstream values the reverse_proxy handler requires (see
// freshUpstreams).
type endpointSet struct {
	// dials are the endpoints' network addresses, in registry order.
	dials []string

	// endpoints are the workloads behind dials, in the same order.
	endpoints []*Workload

	// originalDestinationPort, when set, means the service has no endpoints
	// and forwards to the host the client asked for, on this port.
	originalDestinationPort string

	// pool, when set, narrows the endpoints offered to a request: outlier
	// ejections and locality (see endpointPool). Nil: all dials.
	pool *endpointPool
}

// GetUpstreams returns new Upstream values on every call (the handler
// mutates them), always in the same order. No endpoints gives an empty
// list, for which reverse_proxy answers 503. The request's UpstreamHints
// leave out endpoints already tried and restore X-Forwarded-Host.
func (s *endpointSet) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	hints := upstreamHintsFrom(r)
	hints.fixForwardedHost(r)
	if s.originalDestinationPort != "" {
		host := originalHost(r)
		if host == "" {
			return nil, nil
		}
		return []*reverseproxy.Upstream{{Dial: net.JoinHostPort(host, s.originalDestinationPort)}}, nil
	}
	dials := s.dials
	if s.pool != nil {
		dials = s.pool.available()
	}
	if len(dials) == 0 {
		return nil, nil
	}
	return freshUpstreams(hints.untried(dials)), nil
}

// freshUpstreams returns new Upstream values for dials. A small set, the
// usual one, takes a single allocation for the values and the pointers
// to them; the values cannot be shared between requests, since
// reverse_proxy sets fields of every Upstream it is given.
func freshUpstreams(dials []string) []*reverseproxy.Upstream {
	var (
		values    []reverseproxy.Upstream
		upstreams []*reverseproxy.Upstream
	)
	switch n := len(dials); {
	case n == 1:
		block := new(struct {
			upstreams [1]*reverseproxy.Upstream
			values    [1]reverseproxy.Upstream
		})
		upstreams, values = block.upstreams[:], block.values[:]
	case n == 2:
		block := new(struct {
			upstreams [2]*reverseproxy.Upstream
			values    [2]reverseproxy.Upstream
		})
		upstreams, values = block.upstreams[:], block.values[:]
	case n <= 4:
		block := new(struct {
			upstreams [4]*reverseproxy.Upstream
			values    [4]reverseproxy.Upstream
		})
		upstreams, values = block.upstreams[:n:n], block.values[:n:n]
	default:
		values = make([]reverseproxy.Upstream, n)
		upstreams = make([]*reverseproxy.Upstream, n)
	}
	for i, dial := range dials {
		values[i].Dial = dial
		upstreams[i] = &values[i]
	}
	return upstreams
}

// UpstreamHints is what the istio_route handler tells the cluster upstream
// source about one request, through the request context (see
// WithUpstreamHints). The route handler runs the attempts of a request one
// after the other, so the hints need no locking.
type UpstreamHints struct {
	// Tried are the dial addresses (host:port, as the placeholder
	// {http.reverse_proxy.upstream.hostport}) of the earlier attempts.
	// While endpoints not in Tried remain, only those are offered, as
	// Envoy's previous_hosts retry predicate.
	Tried []string

	// ForwardedHost, when set, is the Host the client sent, for a request
	// whose Host the route rewrote: reverse_proxy derives X-Forwarded-Host
	// from the rewritten Host, and Envoy sends the original one.
	ForwardedHost string
}

type upstreamHintsKey struct{}

// WithUpstreamHints returns ctx carrying hints for the upstream sources of
// the istio app clusters.
func WithUpstreamHints(ctx context.Context, hints *UpstreamHints) context.Context {
	return context.WithValue(ctx, upstreamHintsKey{}, hints)
}

// upstreamHintsFrom returns the hints of r, or nil.
func upstreamHintsFrom(r *http.Request) *UpstreamHints {
	hints, _ := r.Context().Value(upstreamHintsKey{}).(*UpstreamHints)
	return hints
}

// untried returns the dials not tried yet, or all of them when every one
// was tried (or nothing was).
func (h *UpstreamHints) untried(dials []string) []string {
	if h == nil || len(h.Tried) == 0 {
		return dials
	}
	var left []string
	for _, dial := range dials {
		if !slices.Contains(h.Tried, dial) {
			left = append(left, dial)
		}
	}
	if len(left) == 0 {
		return dials
	}
	return left
}

// fixForwardedHost sets X-Forwarded-Host to the client's Host on the
// request reverse_proxy is about to send (GetUpstreams is called with it,
// after reverse_proxy set the header from the rewritten Host). A header
// reverse_proxy was told to omit stays omitted.
func (h *UpstreamHints) fixForwardedHost(r *http.Request) {
	if h == nil || h.ForwardedHost == "" {
		return
	}
	if v, ok := r.Header["X-Forwarded-Host"]; ok && v == nil {
		return
	}
	r.Header["X-Forwarded-Host"] = []string{h.ForwardedHost}
}

// originalHost is the host name the client asked for, without port: the
// Host header or the authority of an absolute-form request (Go puts either
// in Host). The request as received is preferred, because reverse_proxy
// header operations may have changed r.Host on a previous attempt.
func originalHost(r *http.Request) string {
	hostport := r.Host
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.Host != "" {
		hostport = orig.Host
	}
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// Upstreams is the upstream source `http.reverse_proxy.upstreams.istio`: it
// gives a plain reverse_proxy the registry endpoints of an istio app
// cluster, or of a service port and subset. It finds the istio app on first
// use, so it works whichever app Caddy provisions first.
//
// The endpoints are those of the configuration that is loaded; they change
// only when the configuration does.
type Upstreams struct {
	// Cluster is the name of an istio app cluster, e.g.
	// outbound|9080|v1|reviews.default.svc.cluster.local. Exclusive with
	// service, port and subset.
	Cluster string `json:"cluster,omitempty"`

	// Service is the hostname of a registry service.
	Service string `json:"service,omitempty"`

	// Port is the service port number. Required with service.
	Port uint32 `json:"port,omitempty"`

	// Subset is a DestinationRule subset: the endpoints are those of the
	// cluster with this service, port and subset. Default: the whole
	// service port.
	Subset string `json:"subset,omitempty"`

	ctx caddy.Context
	// once guards the lookup of source in the istio app; a pointer keeps
	// the module value copyable, as caddy.RegisterModule requires.
	once   *sync.Once
	source reverseproxy.UpstreamSource
	err    error
}

// CaddyModule returns the Caddy module information.
func (Upstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.istio",
		New: func() caddy.Module { return new(Upstreams) },
	}
}

// Provision keeps the context for the lookup of the istio app.
func (u *Upstreams) Provision(ctx caddy.Context) error {
	u.ctx = ctx
	u.once = new(sync.Once)
	return nil
}

// Validate checks that exactly one of cluster or service+port is set.
func (u *Upstreams) Validate() error {
	switch {
	case u.Cluster != "" && (u.Service != "" || u.Port != 0 || u.Subset != ""):
		return fmt.Errorf("cluster excludes service, port and subset")
	case u.Cluster == "" && (u.Service == "" || u.Port == 0):
		return fmt.Errorf("either cluster, or service and port, is required")
	}
	return nil
}

// GetUpstreams returns the endpoints of the configured cluster.
func (u *Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	u.once.Do(func() { u.source, u.err = u.resolve() })
	if u.err != nil {
		return nil, u.err
	}
	return u.source.GetUpstreams(r)
}

// resolve finds the endpoint set in the istio app. It runs at request time,
// after every app has been provisioned; AppIfConfigured then only reads.
func (u *Upstreams) resolve() (reverseproxy.UpstreamSource, error) {
	appIface, err := u.ctx.AppIfConfigured("istio")
	if err != nil {
		return nil, fmt.Errorf("istio upstreams: %v", err)
	}
	app := appIface.(*App)
	if u.Cluster != "" {
		ch := app.ClusterHandler(u.Cluster)
		if ch == nil {
			return nil, fmt.Errorf("istio upstreams: no cluster %q", u.Cluster)
		}
		return ch.upstreams, nil
	}
	for _, c := range app.Clusters {
		if c.Service == u.Service && c.Port == u.Port && c.Subset == u.Subset {
			return app.ClusterHandler(c.Name).upstreams, nil
		}
	}
	if u.Subset != "" {
		return nil, fmt.Errorf("istio upstreams: no cluster for service %q port %d subset %q", u.Service, u.Port, u.Subset)
	}
	svc := app.registry.services[u.Service]
	if svc == nil {
		return nil, fmt.Errorf("istio upstreams: no service %q", u.Service)
	}
	port := svc.port(u.Port)
	if port == nil {
		return nil, fmt.Errorf("istio upstreams: service %q has no port %d", u.Service, u.Port)
	}
	return app.registry.endpointSet(svc, port, nil), nil
}

// Interface guards
var (
	_ reverseproxy.UpstreamSource = (*endpointSet)(nil)
	_ reverseproxy.UpstreamSource = (*Upstreams)(nil)
	_ caddy.Provisioner           = (*Upstreams)(nil)
	_ caddy.Validator             = (*Upstreams)(nil)
)
