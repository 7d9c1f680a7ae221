package istio

import (
	networking "istio.io/api/networking/v1alpha3"
)

// layer4GatewayServer reports whether server i of gw (a TLS passthrough or
// TCP server, which an HTTP server cannot serve) is served by the layer4
// app instead. Not translated yet: none is.
func (t *translator) layer4GatewayServer(gw *gateway, i int, s *networking.Server) bool {
	return false
}

// layer4SidecarListener reports whether egress listener i of sc (a TLS or
// TCP port) is served by the layer4 app instead. Not translated yet: none
// is.
func (t *translator) layer4SidecarListener(sc *sidecar, i int, e *networking.IstioEgressListener) bool {
	return false
}
