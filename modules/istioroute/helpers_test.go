package istioroute

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// backend is a loopback HTTP server that answers with its name.
type backend struct {
	name string
	srv  *httptest.Server
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return &backend{name: name, srv: srv}
}

// port is the backend's port number.
func (b *backend) port() uint32 {
	return uint32(b.srv.Listener.Addr().(*net.TCPAddr).Port)
}

// endpoint is a workload of the backend with these labels.
func (b *backend) endpoint(labels map[string]string) *istioapp.Workload {
	return &istioapp.Workload{Address: "127.0.0.1", Ports: map[string]uint32{"http": b.port()}, Labels: labels}
}

// newContext returns a Caddy context whose configuration holds the istio
// app built from app (none if nil), provisioned as Caddy would.
func newContext(t testing.TB, app *istioapp.App) caddy.Context {
	t.Helper()
	cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{}}
	if app != nil {
		cfg.AppsRaw["istio"] = json.RawMessage(mustJSON(t, app))
	}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		t.Fatalf("provisioning context: %v", err)
	}
	if app != nil {
		appIface, err := ctx.App("istio")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = appIface.(*istioapp.App).Cleanup() })
	}
	handlerCtx, cancel := caddy.NewContext(ctx)
	t.Cleanup(cancel)
	return handlerCtx
}

// provisionHandler provisions a handler from its configuration, through
// JSON as the adapter's output would be.
func provisionHandler(t testing.TB, ctx caddy.Context, vhosts ...*VirtualHost) *Handler {
	t.Helper()
	h := new(Handler)
	if err := json.Unmarshal(mustJSON(t, Handler{VirtualHosts: vhosts}), h); err != nil {
		t.Fatal(err)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provisioning handler: %v", err)
	}
	return h
}

// result is what a request through the handler gave: the response, or the
// status of the handler error when the handler wrote nothing.
type result struct {
	code   int
	body   string
	header http.Header
}

func serve(t testing.TB, h *Handler, req *http.Request) result {
	t.Helper()
	rec := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	err := h.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("next handler called")
		return nil
	}))
	if err != nil {
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		return result{code: he.StatusCode}
	}
	return result{code: rec.Code, body: rec.Body.String(), header: rec.Header()}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr(s string) *string { return &s }

func exact(s string) *StringMatch  { return &StringMatch{Exact: ptr(s)} }
func prefix(s string) *StringMatch { return &StringMatch{Prefix: ptr(s)} }
func regex(s string) *StringMatch  { return &StringMatch{Regex: ptr(s)} }

// cluster names the cluster outbound|PORT|SUBSET|HOST.
func cluster(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// newRequestInfo reads r as ServeHTTP does, without normalizing its path.
func newRequestInfo(r *http.Request) requestInfo {
	return requestInfoFor(r, r.URL.EscapedPath())
}
