package istio

import (
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// addEgress puts the egress policy of the mesh listener l in front of its
// routes (srv, serving vhosts): Sidecar.outboundTrafficPolicy, through the
// istio_egress handler.
//
// Not translated yet: every Sidecar outboundTrafficPolicy is warned about
// here, and requests to hosts without routes get 404.
func (t *translator) addEgress(l *meshListener, srv *caddyhttp.Server, vhosts []*istioroute.VirtualHost) {
	for _, sc := range t.sidecars {
		if sc.spec.GetOutboundTrafficPolicy() != nil {
			t.warn(sc.obj, "spec.outboundTrafficPolicy", notImplemented+" (requests to unknown hosts get 404)")
		}
	}
}
