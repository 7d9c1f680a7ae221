package istioapp

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// ClusterHandler is a provisioned cluster: the registry endpoints of one
// service port and subset, and the reverse_proxy handler that balances
// requests over them with the cluster's traffic policy.
type ClusterHandler struct {
	name      string
	upstreams *endpointSet
	proxy     *reverseproxy.Handler
}

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
	svc := a.registry.services[c.Service]
	if svc == nil {
		return nil, fmt.Errorf("unknown service %q", c.Service)
	}
	port := svc.port(c.Port)
	if port == nil {
		return nil, fmt.Errorf("service %q has no port %d", c.Service, c.Port)
	}

	proxy, err := decodeProxy(c.Proxy)
	if err != nil {
		return nil, err
	}
	set := a.registry.endpointSet(svc, port, c.Labels)
	proxy.DynamicUpstreams = set
	if err := proxy.Provision(ctx); err != nil {
		return nil, fmt.Errorf("provisioning reverse_proxy: %v", err)
	}
	ch := &ClusterHandler{name: c.Name, upstreams: set, proxy: proxy}
	a.provisioned = append(a.provisioned, ch)
	return ch, nil
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
