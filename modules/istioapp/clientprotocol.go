package istioapp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// clientProtocolTransport is the transport of a cluster with
// ConnectionPool.UseClientProtocol (Envoy's use_downstream_protocol): a
// request whose client spoke HTTP/2 or HTTP/3 goes upstream over HTTP/2,
// any other over HTTP/1.1, each protocol with its own connection pool.
type clientProtocolTransport struct {
	http1, http2 http.RoundTripper
	// ht is the HTTP/1.1 transport, asked for the transport properties
	// both share.
	ht *reverseproxy.HTTPTransport
}

// RoundTrip sends req with the protocol of its client.
func (t *clientProtocolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if clientSpokeHTTP2(req) {
		return t.http2.RoundTrip(req)
	}
	return t.http1.RoundTrip(req)
}

// clientSpokeHTTP2 tells whether the client of req came over HTTP/2 or
// HTTP/3, which Envoy forwards as HTTP/2 without HTTP/3 upstream options.
// reverse_proxy's copy of the client's request keeps its version. An
// upgrade (reverse_proxy turns an HTTP/2 or HTTP/3 WebSocket CONNECT into
// one) needs HTTP/1.1.
func clientSpokeHTTP2(req *http.Request) bool {
	return req.ProtoMajor >= 2 && req.Header.Get("Upgrade") == ""
}

// ProxyProtocolEnabled forwards to the HTTP/1.1 transport (both share the
// setting).
func (t *clientProtocolTransport) ProxyProtocolEnabled() bool { return t.ht.ProxyProtocolEnabled() }

// TLSEnabled forwards to the HTTP/1.1 transport.
func (t *clientProtocolTransport) TLSEnabled() bool { return t.ht.TLSEnabled() }

// OverrideHealthCheckScheme forwards to the HTTP/1.1 transport.
func (t *clientProtocolTransport) OverrideHealthCheckScheme(base *url.URL, port string) {
	t.ht.OverrideHealthCheckScheme(base, port)
}

// transportModule holds a transport configuration to load.
type transportModule struct {
	TransportRaw json.RawMessage `caddy:"namespace=http.reverse_proxy.transport inline_key=protocol"`
}

// loadClientProtocolTransports loads the proxy's http transport twice:
// for HTTP/1.1 and for HTTP/2 (h2c in clear text, h2 over TLS), whatever
// versions it lists. TransportRaw is then cleared.
func loadClientProtocolTransports(ctx caddy.Context, proxy *reverseproxy.Handler) (http1, http2 *reverseproxy.HTTPTransport, err error) {
	raw := proxy.TransportRaw
	if len(raw) == 0 {
		raw = json.RawMessage(`{"protocol":"http"}`)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, nil, fmt.Errorf("decoding transport: %v", err)
	}
	if string(fields["protocol"]) != `"http"` {
		return nil, nil, fmt.Errorf("use_client_protocol needs the http transport")
	}
	load := func(versions string) (*reverseproxy.HTTPTransport, error) {
		fields["versions"] = json.RawMessage(versions)
		b, err := json.Marshal(fields)
		if err != nil {
			return nil, err
		}
		holder := &transportModule{TransportRaw: b}
		mod, err := ctx.LoadModule(holder, "TransportRaw")
		if err != nil {
			return nil, fmt.Errorf("loading transport: %v", err)
		}
		return mod.(*reverseproxy.HTTPTransport), nil
	}
	if http1, err = load(`["1.1"]`); err != nil {
		return nil, nil, err
	}
	h2 := `["h2c"]`
	if _, ok := fields["tls"]; ok {
		h2 = `["2"]`
	}
	if http2, err = load(h2); err != nil {
		return nil, nil, err
	}
	proxy.TransportRaw = nil
	return http1, http2, nil
}

// Interface guards
var (
	_ http.RoundTripper                                = (*clientProtocolTransport)(nil)
	_ reverseproxy.ProxyProtocolTransport              = (*clientProtocolTransport)(nil)
	_ reverseproxy.HealthCheckSchemeOverriderTransport = (*clientProtocolTransport)(nil)
)
