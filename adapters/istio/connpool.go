package istio

import (
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// Istio's connection defaults, written explicitly because Caddy's differ
// (dial 3s, idle 2m).
const (
	defaultConnectTimeout = 10 * time.Second // MeshConfig.connectTimeout
	defaultIdleTimeout    = time.Hour        // Envoy's HTTP idle_timeout
)

// noIdleTimeout is the keep_alive idle_timeout that keeps idle connections
// forever (Istio's idleTimeout "0s"): Caddy replaces 0 by its default,
// and Go's transport treats a negative timeout as none.
const noIdleTimeout = caddy.Duration(-1)

// applyConnectionPool sets the transport settings of cp that Caddy's
// HTTPTransport has (dial_timeout, keep_alive, max_conns_per_host,
// versions), with Istio's defaults when cp leaves them unset. tls tells
// whether the transport speaks TLS, http2 whether the service port's
// protocol is HTTP2, GRPC or GRPC-WEB (Istio's IsHTTP2), for the HTTP
// version.
func applyConnectionPool(tr *reverseproxy.HTTPTransport, cp *networking.ConnectionPoolSettings, tls, http2 bool) {
	tcp, http := cp.GetTcp(), cp.GetHttp()

	tr.DialTimeout = caddy.Duration(defaultConnectTimeout)
	if d := tcp.GetConnectTimeout(); d != nil && d.AsDuration() > 0 {
		tr.DialTimeout = caddy.Duration(d.AsDuration())
	}
	if n := tcp.GetMaxConnections(); n > 0 {
		tr.MaxConnsPerHost = int(n)
	}

	ka := &reverseproxy.KeepAlive{IdleConnTimeout: caddy.Duration(defaultIdleTimeout)}
	// Envoy's HTTP connection pool uses the http idle timeout; the tcp one
	// stands in when only it is set.
	idle := http.GetIdleTimeout()
	if idle == nil {
		idle = tcp.GetIdleTimeout()
	}
	if idle != nil {
		ka.IdleConnTimeout = caddy.Duration(idle.AsDuration())
		if idle.AsDuration() <= 0 {
			ka.IdleConnTimeout = noIdleTimeout
		}
	}
	if i := tcp.GetTcpKeepalive().GetInterval(); i != nil && i.AsDuration() > 0 {
		ka.ProbeInterval = caddy.Duration(i.AsDuration())
	}
	if http.GetMaxRequestsPerConnection() == 1 {
		disabled := false
		ka.Enabled = &disabled
	}
	tr.KeepAlive = ka

	switch {
	case http2 && tls:
		// Istio's setUpstreamProtocol: an HTTP/2 port speaks HTTP/2
		// whatever h2UpgradePolicy says (it applies to HTTP ports)
		tr.Versions = []string{"2"}
	case http2:
		// HTTP/2 with prior knowledge, as Envoy's http2_protocol_options
		tr.Versions = []string{"h2c"}
	case http.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && tls:
		tr.Versions = []string{"2"}
	case http.GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE:
		tr.Versions = []string{"h2c", "2"}
	case tls:
		// Envoy speaks HTTP/1.1 to an HTTP/1.1 port unless told to
		// upgrade; Go's transport would negotiate h2 by ALPN.
		tr.Versions = []string{"1.1"}
	}
}

// connectionPoolOf is the Cluster.ConnectionPool of cp: the circuit
// breaker limits and per-connection limits, nil when none is set (Istio
// treats 0 and negative values as unset).
func connectionPoolOf(cp *networking.ConnectionPoolSettings) *istioapp.ConnectionPool {
	tcp, http := cp.GetTcp(), cp.GetHttp()
	positive := func(n int32) uint32 { return uint32(max(n, 0)) }
	out := &istioapp.ConnectionPool{
		MaxConnections:           positive(tcp.GetMaxConnections()),
		MaxPendingRequests:       positive(http.GetHttp1MaxPendingRequests()),
		MaxRequests:              positive(http.GetHttp2MaxRequests()),
		MaxRetries:               positive(http.GetMaxRetries()),
		MaxRequestsPerConnection: positive(http.GetMaxRequestsPerConnection()),
		// validation refuses it with h2UpgradePolicy UPGRADE
		UseClientProtocol: http.GetUseClientProtocol(),
	}
	if d := tcp.GetMaxConnectionDuration(); d != nil && d.AsDuration() > 0 {
		out.MaxConnectionDuration = caddy.Duration(d.AsDuration())
	}
	if ka := tcp.GetTcpKeepalive(); ka != nil {
		out.TCPKeepalive = &istioapp.TCPKeepalive{
			Time:     caddy.Duration(max(ka.GetTime().AsDuration(), 0)),
			Interval: caddy.Duration(max(ka.GetInterval().AsDuration(), 0)),
			Probes:   ka.GetProbes(),
		}
	}
	if ka := http.GetHttp2KeepAlive(); ka != nil && ka.GetInterval().AsDuration() > 0 {
		out.HTTP2KeepAlive = &istioapp.HTTP2KeepAlive{
			Interval: caddy.Duration(ka.GetInterval().AsDuration()),
			Timeout:  caddy.Duration(max(ka.GetTimeout().AsDuration(), 0)),
		}
	}
	if *out == (istioapp.ConnectionPool{}) {
		return nil
	}
	return out
}

// checkConnectionPool warns about the connection pool settings Caddy's
// transport cannot apply.
func (t *translator) checkConnectionPool(obj *istioyaml.Object, path string, cp *networking.ConnectionPoolSettings) {
	if cp.GetHttp().GetMaxConcurrentStreams() > 0 {
		t.warn(obj, path+".http.maxConcurrentStreams", "not supported: Go's HTTP/2 client caps the streams of a connection only at the server's SETTINGS_MAX_CONCURRENT_STREAMS and has no lower client-side limit; the server's limit applies")
	}
}
