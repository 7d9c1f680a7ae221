package istioapp

import (
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

const (
	meshClientID = "spiffe://cluster.local/ns/default/sa/client"
	meshServerID = "spiffe://cluster.local/ns/default/sa/reviews"
)

// TestIstioMutual: a cluster with ISTIO_MUTUAL presents the mesh identity
// of Mesh.Identity and accepts a server certificate of the mesh with one of
// the subject alt names.
func TestIstioMutual(t *testing.T) {
	// the server side: a mesh identity from a Caddy config with the CA
	noTrust := false
	storage := t.TempDir()
	load := func(apps map[string]any) caddy.Context {
		t.Helper()
		apps["pki"] = map[string]any{"certificate_authorities": map[string]any{"istio": map[string]any{"install_trust": noTrust}}}
		raw, err := json.Marshal(map[string]any{
			"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
			"storage": map[string]any{"module": "file_system", "root": storage},
			"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
			"apps":    apps,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(raw, true); err != nil {
			t.Fatalf("loading caddy config: %v", err)
		}
		return caddy.ActiveContext()
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	var seenClient string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			seenClient = r.TLS.PeerCertificates[0].URIs[0].String()
		}
		io.WriteString(w, "mtls ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshake
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	addr := ln.Addr().String()

	cluster := func(name string, sans []string) *Cluster {
		return &Cluster{
			Name: name, Service: "reviews.example", Port: 80,
			Proxy: json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"],"tls":{}}}`),
			TLS:   &UpstreamTLS{IstioMutual: true, SubjectAltNames: sans},
		}
	}
	ep := serverEndpoint(t, addr)
	app := &App{
		Services: []*Service{{
			Hostname: "reviews.example", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 80, Name: "http"}},
			Endpoints: []*Workload{ep},
		}},
		Clusters: []*Cluster{
			cluster("outbound|80|right|reviews.example", []string{meshServerID}),
			cluster("outbound|80|any|reviews.example", nil),
			cluster("outbound|80|wrong|reviews.example", []string{"spiffe://cluster.local/ns/default/sa/other"}),
		},
		Mesh: &Mesh{Identity: meshClientID},
	}
	var appJSON map[string]any
	if err := json.Unmarshal([]byte(mustJSON(t, app)), &appJSON); err != nil {
		t.Fatal(err)
	}
	ctx := load(map[string]any{"istio": appJSON})
	serverID, err := istiomesh.NewIdentity(ctx, "istio", meshServerID)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = istiomesh.ServerTLSConfig(serverID, "cluster.local", nil)
	srv.StartTLS()

	appIface, err := ctx.App("istio")
	if err != nil {
		t.Fatal(err)
	}
	istio := appIface.(*App)
	for _, tc := range []struct {
		subset string
		ok     bool
	}{{"right", true}, {"any", true}, {"wrong", false}} {
		seenClient = ""
		r := do(istio.ClusterHandler("outbound|80|"+tc.subset+"|reviews.example"), "/")
		if tc.ok && (r.code != 200 || r.body != "mtls ok" || seenClient != meshClientID) {
			t.Errorf("%s: %+v, client identity %q, want 200 as %s", tc.subset, r, seenClient, meshClientID)
		}
		if !tc.ok && r.code == 200 {
			t.Errorf("%s: %+v, want a failed handshake (server identity not in subject alt names)", tc.subset, r)
		}
	}
}

// TestTLSKeepsHostAndAutoSNI: over TLS the upstream gets the request's Host
// (Caddy's transport would send the endpoint address), and with auto-SNI
// each request's host as SNI, on a connection of its own name.
func TestTLSKeepsHostAndAutoSNI(t *testing.T) {
	var mu sync.Mutex
	sniOf := map[string]string{} // by connection
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := sniOf[r.RemoteAddr]; ok && prev != r.TLS.ServerName {
			t.Errorf("connection %s of SNI %q reused for %q", r.RemoteAddr, prev, r.TLS.ServerName)
		}
		sniOf[r.RemoteAddr] = r.TLS.ServerName
		io.WriteString(w, r.Host+" "+r.TLS.ServerName)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, tls string
		wantSNI   func(host string) string
	}{
		{"auto-SNI", `{"insecure_skip_verify":true,"server_name":"` + AutoSNI + `"}`, func(host string) string { return host }},
		{"fixed SNI", `{"insecure_skip_verify":true,"server_name":"fixed.example"}`, func(string) string { return "fixed.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := oneClusterApp(t, &Cluster{
				Name:  "outbound|80||sni.example",
				Proxy: json.RawMessage(`{"transport":{"protocol":"http","tls":` + tc.tls + `}}`),
			}, serverEndpoint(t, srv.Listener.Addr().String()))
			for _, host := range []string{"a.example", "b.example:8443", "a.example", "b.example:8443"} {
				code, body := serve(t, ch, httptest.NewRequest(http.MethodGet, "http://"+host+"/", nil))
				name, _, _ := strings.Cut(host, ":")
				if want := host + " " + tc.wantSNI(name); code != http.StatusOK || body != want {
					t.Errorf("Host %s: %d %q, want 200 %q", host, code, body, want)
				}
			}
		})
	}
}
