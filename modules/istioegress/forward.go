package istioegress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// provisionForward sets up the reverse_proxy that forwards plain HTTP
// requests to the addresses the policy chose (see checkedUpstreams): Caddy's
// streaming, websockets and hop-by-hop header handling, with the handler's
// dial timeout.
func (h *Handler) provisionForward(ctx caddy.Context) error {
	transport, err := json.Marshal(map[string]any{
		"protocol":     "http",
		"dial_timeout": caddy.Duration(h.DialTimeout),
	})
	if err != nil {
		return err
	}
	h.forward = &reverseproxy.Handler{
		TransportRaw:     transport,
		DynamicUpstreams: checkedUpstreams{},
	}
	if err := h.forward.Provision(ctx); err != nil {
		return fmt.Errorf("forwarding proxy: %v", err)
	}
	// its per-request log fields are encoded only for a written entry
	istioapp.LazyProxyLogFields(h.forward)
	return nil
}

// serveForward applies the policy to a plain HTTP request for a host
// outside the mesh and forwards it. A refused request gets 502 with an
// empty body, as Envoy's block_all virtual host answers.
func (h *Handler) serveForward(w http.ResponseWriter, r *http.Request, dest *destination, entry *logEntry) error {
	defer func() { entry.write(h.logger) }()
	if r.URL.Scheme == "https" {
		// the client would have the proxy originate TLS; clients use
		// CONNECT for https URLs
		entry.refuse("absolute-form https requests are not supported, use CONNECT")
		entry.status = http.StatusBadRequest
		http.Error(w, "istio_egress: "+entry.reason, http.StatusBadRequest)
		return nil
	}
	dec := h.decide(r.Context(), dest)
	if dec.refused {
		entry.refuse(dec.reason)
		entry.status = http.StatusBadGateway
		w.WriteHeader(http.StatusBadGateway)
		return nil
	}
	entry.allow(dec.reason)
	entry.upstream = strings.Join(dec.dials, ",")

	for name := range r.Header {
		if strings.HasPrefix(name, "Proxy-") {
			r.Header.Del(name)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingReader{ReadCloser: r.Body, entry: entry}
	}
	cw := &countingWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, entry: entry}
	r = r.WithContext(context.WithValue(r.Context(), dialsKey{}, dec.dials))
	err := h.forward.ServeHTTP(cw, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	entry.status = cw.status
	if err != nil {
		if herr, ok := err.(caddyhttp.HandlerError); ok && cw.status == 0 {
			entry.status = herr.StatusCode
		}
		entry.reason += "; " + err.Error()
	}
	return err
}

type dialsKey struct{}

// checkedUpstreams gives the forwarding reverse_proxy the addresses the
// policy checked for this request (in its context).
type checkedUpstreams struct{}

func (checkedUpstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	dials, _ := r.Context().Value(dialsKey{}).([]string)
	upstreams := make([]*reverseproxy.Upstream, len(dials))
	for i, dial := range dials {
		upstreams[i] = &reverseproxy.Upstream{Dial: dial}
	}
	return upstreams, nil
}

// countingReader counts the request body bytes sent upstream.
type countingReader struct {
	io.ReadCloser
	entry *logEntry
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.entry.bytesUp.Add(int64(n))
	return n, err
}

// countingWriter counts the response bytes and keeps the status.
type countingWriter struct {
	*caddyhttp.ResponseWriterWrapper
	entry  *logEntry
	status int
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 || status >= 200 {
		c.status = status
	}
	c.ResponseWriterWrapper.WriteHeader(status)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriterWrapper.Write(p)
	c.entry.bytesDown.Add(int64(n))
	return n, err
}

// ReadFrom keeps the count when the proxy copies with io.Copy.
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{c}, r)
}

type writerOnly struct{ io.Writer }

// Interface guards
var (
	_ reverseproxy.UpstreamSource = checkedUpstreams{}
	_ http.ResponseWriter         = (*countingWriter)(nil)
)
