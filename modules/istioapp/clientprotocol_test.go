package istioapp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// doProto serves one request of a client that spoke HTTP/major through ch.
func doProto(ch *ClusterHandler, major int) result {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://svc.example/", nil)
	if major == 2 {
		req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	}
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, &caddyhttp.Server{})
	err := ch.ServeHTTP(rec, req, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if err != nil {
		return result{code: -1, body: err.Error()}
	}
	return result{code: rec.Code, body: rec.Body.String()}
}

// TestUseClientProtocol: an HTTP/2 client's request goes upstream over
// HTTP/2 (h2c in clear text, h2 over TLS), an HTTP/1.1 client's over
// HTTP/1.1, whatever versions the transport lists.
func TestUseClientProtocol(t *testing.T) {
	proto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	clear := httptest.NewUnstartedServer(proto)
	clear.Config.Protocols = new(http.Protocols)
	clear.Config.Protocols.SetHTTP1(true)
	clear.Config.Protocols.SetUnencryptedHTTP2(true)
	clear.Start()
	t.Cleanup(clear.Close)
	tls := httptest.NewUnstartedServer(proto)
	tls.EnableHTTP2 = true
	tls.StartTLS()
	t.Cleanup(tls.Close)

	for _, tc := range []struct {
		name, transport string
		srv             *httptest.Server
	}{
		{"clear text", `{"protocol":"http","versions":["1.1"]}`, clear},
		{"clear text, h2c listed", `{"protocol":"http","versions":["h2c"]}`, clear},
		{"tls", `{"protocol":"http","versions":["1.1"],"tls":{"insecure_skip_verify":true}}`, tls},
		{"tls with auto-SNI", `{"protocol":"http","tls":{"insecure_skip_verify":true,"server_name":"` + AutoSNI + `"}}`, tls},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := oneClusterApp(t, &Cluster{
				Name:  "outbound|80||client-protocol.example",
				Proxy: json.RawMessage(`{"transport":` + tc.transport + `}`),
				// a connection cap: HTTP/2 requests take no HTTP/1 slot
				ConnectionPool: &ConnectionPool{UseClientProtocol: true, MaxConnections: 1},
			}, serverEndpoint(t, tc.srv.Listener.Addr().String()))
			for _, want := range []struct {
				client int
				proto  string
			}{{1, "HTTP/1.1"}, {2, "HTTP/2.0"}, {1, "HTTP/1.1"}, {2, "HTTP/2.0"}} {
				if r := doProto(ch, want.client); r.code != 200 || r.body != want.proto {
					t.Errorf("HTTP/%d client: %+v, want upstream %s", want.client, r, want.proto)
				}
			}
		})
	}
}

// TestMaxConcurrentStreamsRefused: the client-side stream cap is not
// implemented, so a cluster asking for one is refused, not ignored.
func TestMaxConcurrentStreamsRefused(t *testing.T) {
	c := &Cluster{
		Name: "outbound|80||streams.example", Service: "svc.example", Port: 80,
		Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["h2c"]}}`),
		ConnectionPool: &ConnectionPool{MaxConcurrentStreams: 10},
	}
	cfg := &App{
		Services: []*Service{{Hostname: "svc.example", Resolution: "STATIC", Ports: []*ServicePort{{Number: 80, Name: "http"}}}},
		Clusters: []*Cluster{c},
	}
	_, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: caddy.ModuleMap{"istio": json.RawMessage(mustJSON(t, cfg))}})
	if err == nil || !strings.Contains(err.Error(), "max_concurrent_streams: not supported") {
		t.Errorf("err = %v", err)
	}
}

func TestClientSpokeHTTP2(t *testing.T) {
	for _, tc := range []struct {
		major   int
		upgrade string
		want    bool
	}{{1, "", false}, {2, "", true}, {3, "", true}, {2, "websocket", false}} {
		req := httptest.NewRequest(http.MethodGet, "http://svc.example/", nil)
		req.ProtoMajor = tc.major
		if tc.upgrade != "" {
			req.Header.Set("Upgrade", tc.upgrade)
		}
		if got := clientSpokeHTTP2(req); got != tc.want {
			t.Errorf("HTTP/%d upgrade %q: %v, want %v", tc.major, tc.upgrade, got, tc.want)
		}
	}
}
