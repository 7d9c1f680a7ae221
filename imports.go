// Package caddyistio brings every caddy-istio module into a Caddy build with
// one import: `xcaddy build --with github.com/caddy-istio/caddy-istio`.
package caddyistio

import (
	// The istio config adapter: caddy adapt/run --adapter istio.
	_ "github.com/caddy-istio/caddy-istio/adapters/istio"
	// admin.api.istio: live routes, clusters and endpoints on the admin API; the `caddy istio` command.
	_ "github.com/caddy-istio/caddy-istio/modules/istioadmin"
	// The istio app: registry of services, endpoints and clusters.
	_ "github.com/caddy-istio/caddy-istio/modules/istioapp"
	// http.reverse_proxy.selection_policies.least_request: Envoy's LEAST_REQUEST.
	_ "github.com/caddy-istio/caddy-istio/modules/istiolb"
	// http.handlers.istio_egress: the egress forward proxy (CONNECT, absolute-form HTTP).
	_ "github.com/caddy-istio/caddy-istio/modules/istioegress"
	// http.handlers.istio_fault: fault injection (delay, abort).
	_ "github.com/caddy-istio/caddy-istio/modules/istiofault"
	// caddy.config_loaders.istio_kube: follow a Kubernetes API server.
	_ "github.com/caddy-istio/caddy-istio/modules/istiokube"
	// http.handlers.istio_route: VirtualService routing.
	_ "github.com/caddy-istio/caddy-istio/modules/istioroute"
	// caddy.listeners.istio_mtls: mesh mTLS (ISTIO_MUTUAL) identities from the pki app.
	_ "github.com/caddy-istio/caddy-istio/modules/istiomesh"
	// The layer4 app (TLS passthrough and TCP Gateway servers, VirtualService
	// tls and tcp routes): its proxy handler, TLS SNI matcher and subroutes.
	_ "github.com/mholt/caddy-l4/layer4"
	_ "github.com/mholt/caddy-l4/modules/l4proxy"
	_ "github.com/mholt/caddy-l4/modules/l4subroute"
	_ "github.com/mholt/caddy-l4/modules/l4tls"
)
