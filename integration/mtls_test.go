package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/caddyserver/caddy/v2/modules/caddypki"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"

	"github.com/caddy-istio/caddy-istio/modules/istiomesh"
)

// Mesh identities of the ISTIO_MUTUAL test.
const (
	productpageID = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
	reviewsID     = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
	ratingsID     = "spiffe://cluster.local/ns/default/sa/bookinfo-ratings"
)

// meshStorageConfig is the part of a Caddy JSON config that puts a process
// in the mesh: file storage at storage (shared by the mesh members, so they
// share the CA generated there) and the pki app's mesh CA "istio".
func meshStorageConfig(storage string, extraCAs ...string) map[string]any {
	ca := map[string]any{"install_trust": false}
	cas := map[string]any{"istio": ca}
	for _, id := range extraCAs {
		cas[id] = ca
	}
	return map[string]any{
		"storage": map[string]any{"module": "file_system", "root": storage},
		"apps":    map[string]any{"pki": map[string]any{"certificate_authorities": cas}},
	}
}

// startCaddyJSON runs `caddy run --config FILE` with a JSON config and
// waits until addr accepts connections.
func startCaddyJSON(t *testing.T, name string, config map[string]any, addr string) *process {
	t.Helper()
	requireBinaries(t)
	requireFree(t, addr)
	dir := t.TempDir()
	config["admin"] = map[string]any{"disabled": true}
	raw, err := json.MarshalIndent(config, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, name, caddyBin, []string{"run", "--config", file}, childEnv(filepath.Join(dir, "home")), nil)
	t.Cleanup(func() { stopAndCheckRaces(t, p, name) })
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return p
		}
		if p.exited() {
			t.Fatalf("%s exited before listening on %s:\n%s", name, addr, tail(p.output.String(), 4096))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within %v", name, addr, startTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMTLSIstioMutual: a Caddy process (the reviews workload) serves mesh
// mTLS with the istio_mtls listener wrapper; a mesh client (productpage,
// here the test process with the same storage, so the same CA) reaches it
// with ISTIO_MUTUAL. Strangers are refused at the handshake, and the
// client refuses a server whose identity it does not expect.
func TestMTLSIstioMutual(t *testing.T) {
	storage := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))

	// B: reviews, behind istio_mtls, answering with the client's identity.
	b := meshStorageConfig(storage)
	b["apps"].(map[string]any)["http"] = map[string]any{"servers": map[string]any{
		"reviews": map[string]any{
			"listen": []string{addr},
			"listener_wrappers": []any{map[string]any{
				"wrapper":  "istio_mtls",
				"identity": reviewsID,
			}},
			"automatic_https": map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{map[string]any{
				"handler": "static_response",
				"headers": map[string]any{"X-Peer-Identity": []string{"{http.request.tls.client.san.uris.0}"}},
				"body":    "reviews saw {http.request.tls.client.san.uris.0} over {http.request.proto}",
			}}}},
		},
	}}
	startCaddyJSON(t, "caddy-reviews", b, addr)

	// A: productpage, in this process, after B has created the CA in the
	// shared storage; "other" is a CA that B does not trust.
	a := meshStorageConfig(storage, "other")
	// No autosave of the config into the user's config directory.
	a["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	a["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}}
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		t.Fatalf("loading the client's caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	ctx := caddy.ActiveContext()
	productpage, err := istiomesh.NewIdentity(ctx, "istio", productpageID)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := istiomesh.NewIdentity(ctx, "other", productpageID)
	if err != nil {
		t.Fatal(err)
	}

	url := "https://" + addr + "/"
	t.Run("mesh client with the expected server identity", func(t *testing.T) {
		for _, h2 := range []bool{false, true} {
			resp, body, err := mtlsGet(t, url, productpage, []string{ratingsID, reviewsID}, h2)
			if err != nil {
				t.Fatalf("h2=%v: %v", h2, err)
			}
			proto := "HTTP/1.1"
			if h2 {
				proto = "HTTP/2.0"
			}
			want := "reviews saw " + productpageID + " over " + proto
			if resp.StatusCode != http.StatusOK || body != want || resp.Header.Get("X-Peer-Identity") != productpageID {
				t.Errorf("h2=%v: got %d %q (X-Peer-Identity %q), want 200 %q", h2, resp.StatusCode, body, resp.Header.Get("X-Peer-Identity"), want)
			}
		}
	})
	t.Run("mesh client with no SANs accepts any identity of the trust domain", func(t *testing.T) {
		if resp, _, err := mtlsGet(t, url, productpage, nil, true); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("got %v, %v", resp, err)
		}
	})
	t.Run("mesh client expecting another identity refuses the server", func(t *testing.T) {
		_, body, err := mtlsGet(t, url, productpage, []string{ratingsID}, false)
		if err == nil || !strings.Contains(err.Error(), "subject alt names") {
			t.Errorf("got %q, %v; want the client to refuse the server's identity", body, err)
		}
	})
	t.Run("client of another CA is refused", func(t *testing.T) {
		if _, body, err := mtlsGet(t, url, stranger, nil, false); err == nil {
			t.Errorf("answered %q", body)
		}
	})
	t.Run("TLS client without a certificate is refused", func(t *testing.T) {
		transport := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer transport.CloseIdleConnections()
		client := &http.Client{Transport: transport, Timeout: requestTimeout}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("answered %d", resp.StatusCode)
		}
	})
	t.Run("plaintext client is refused", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(requestTimeout))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"); err != nil {
			return
		}
		// Closed without an answer, as a STRICT sidecar resets it (Go's
		// own TLS server would answer 400).
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			t.Errorf("plaintext request answered %d %q", resp.StatusCode, body)
		}
	})
}

// mtlsGet sends one GET with ISTIO_MUTUAL as id, expecting one of sans.
func mtlsGet(t *testing.T, url string, id *istiomesh.Identity, sans []string, h2 bool) (*http.Response, string, error) {
	t.Helper()
	cfg := &tls.Config{}
	istiomesh.ConfigureIstioMutual(cfg, id, istiomesh.IstioMutualSNI(9080, "", "reviews.default.svc.cluster.local"), sans, "")
	transport := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		transport.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: requestTimeout}
	resp, err := client.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body), err
}

// startReviewsMTLS runs a Caddy process (the reviews workload) with file
// storage at storage whose server at addr terminates mesh mTLS with the
// istio_mtls listener wrapper as reviewsID and answers with the client's
// identity. Its pki app is not configured: the mesh CA is the default one,
// from storage.
func startReviewsMTLS(t *testing.T, storage, addr string) {
	t.Helper()
	startCaddyJSON(t, "caddy-reviews", map[string]any{
		"storage": map[string]any{"module": "file_system", "root": storage},
		"apps": map[string]any{"http": map[string]any{"servers": map[string]any{
			"reviews": map[string]any{
				"listen": []string{addr},
				"listener_wrappers": []any{map[string]any{
					"wrapper":  "istio_mtls",
					"identity": reviewsID,
				}},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{map[string]any{"handle": []any{map[string]any{
					"handler": "static_response",
					"headers": map[string]any{"X-Peer-Identity": []string{"{http.request.tls.client.san.uris.0}"}},
					"body":    "reviews saw {http.request.tls.client.san.uris.0} over {http.request.proto}",
				}}}},
			},
		}}},
	}, addr)
}

// TestMTLSBetweenCaddyProcesses: process A runs the istio adapter's mesh
// with DestinationRules of mode ISTIO_MUTUAL towards process B, which is
// behind istio_mtls; they share the mesh CA through storage (A creates it,
// B finds it). A reaches B and B sees A's identity; a service whose
// ServiceEntry names another identity makes A refuse B; a cluster without
// TLS is refused by B.
func TestMTLSBetweenCaddyProcesses(t *testing.T) {
	requireBinaries(t)
	bAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	bPort := portOf(t, bAddr)
	// The identity A expects of B is the ServiceEntry's subjectAltNames.
	entry := func(host, san string) string {
		sans := ""
		if san != "" {
			sans = "  subjectAltNames:\n  - " + san + "\n"
		}
		return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ` + host + `
spec:
` + sans + `  hosts:
  - ` + host + `.default.svc.cluster.local
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
    ports:
      http: ` + bPort + `
`
	}
	rule := func(host string) string {
		return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ` + host + `
spec:
  host: ` + host + `.default.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`
	}
	bind := randomLoopback()
	listener := net.JoinHostPort(bind, "9080")
	a := startCaddy(t, joinDocs(
		entry("reviews", reviewsID), rule("reviews"),
		entry("ratings", ratingsID), rule("ratings"),
		entry("plain", ""),
		vsSidecar("mtls", bind, nil, 9080),
	), listener)

	// A has created the mesh CA in its storage, Caddy's default under
	// XDG_DATA_HOME (see startCaddy and childEnv).
	storage := filepath.Join(filepath.Dir(a.configFile), "home", "data", "caddy")
	if _, err := os.Stat(filepath.Join(storage, "pki", "authorities", "istio", "root.crt")); err != nil {
		t.Fatalf("process A has no mesh CA in its storage: %v", err)
	}
	startReviewsMTLS(t, storage, bAddr)

	client := hostClient(t, listener)
	defaultID := "spiffe://cluster.local/ns/default/sa/default"
	got := get(t, client, "http://reviews.default.svc.cluster.local:9080/")
	if got.Status != http.StatusOK || got.Body != "reviews saw "+defaultID+" over HTTP/1.1" && got.Body != "reviews saw "+defaultID+" over HTTP/2.0" {
		t.Errorf("reviews through A: got %d %q, want 200 with A's identity %s", got.Status, got.Body, defaultID)
	}
	// Envoy's local reply for a failed TLS handshake with the upstream.
	for _, tc := range []struct{ host, why string }{
		{"ratings", "A expects " + ratingsID + ", B is " + reviewsID + ": A refuses B"},
		{"plain", "no TLS towards B: B refuses A"},
	} {
		got := get(t, client, "http://"+tc.host+".default.svc.cluster.local:9080/")
		t.Logf("%s: %d %q", tc.host, got.Status, got.Body)
		if got.Status != http.StatusServiceUnavailable || strings.Contains(got.Body, "reviews saw") {
			t.Errorf("%s (%s): got %d %q, want 503", tc.host, tc.why, got.Status, got.Body)
		}
	}
}

// TestMTLSSimultaneousStartShareOneCA: two mesh members that start at the
// same moment on empty shared storage agree on one mesh root (the default
// CA is created under a storage lock), so each trusts the other.
func TestMTLSSimultaneousStartShareOneCA(t *testing.T) {
	requireBinaries(t)
	storage := t.TempDir()
	addrs := []string{"127.0.0.1:" + strconv.Itoa(freePort(t)), "127.0.0.1:" + strconv.Itoa(freePort(t))}
	var procs []*process
	for i, addr := range addrs {
		dir := t.TempDir()
		config, err := json.Marshal(map[string]any{
			"admin":   map[string]any{"disabled": true},
			"storage": map[string]any{"module": "file_system", "root": storage},
			"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"mesh": map[string]any{
				"listen":            []string{addr},
				"listener_wrappers": []any{map[string]any{"wrapper": "istio_mtls"}},
				"automatic_https":   map[string]any{"disable": true},
			}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "caddy.json")
		if err := os.WriteFile(file, config, 0o644); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, startProcess(t, "caddy-member-"+strconv.Itoa(i), caddyBin, []string{"run", "--config", file}, childEnv(filepath.Join(dir, "home")), nil))
	}
	var chains [][]*x509.Certificate
	for i, addr := range addrs {
		deadline := time.Now().Add(startTimeout)
		var chain []*x509.Certificate
		for chain == nil {
			if procs[i].exited() {
				t.Fatalf("member %d exited:\n%s", i, tail(procs[i].output.String(), 4096))
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d did not serve TLS on %s within %v", i, addr, startTimeout)
			}
			// The server's chain is all we need; the handshake itself fails
			// for want of a client certificate.
			cfg := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
				chain = cs.PeerCertificates
				return nil
			}}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
			if err == nil {
				conn.Close()
			}
			if chain == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
		chains = append(chains, chain)
	}
	rootPEM, err := os.ReadFile(filepath.Join(storage, "pki", "authorities", "istio", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root certificate in storage")
	}
	for i, chain := range chains {
		intermediates := x509.NewCertPool()
		for _, c := range chain[1:] {
			intermediates.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates}); err != nil {
			t.Errorf("member %d's certificate does not chain to the root in the shared storage: %v", i, err)
		}
	}
}
