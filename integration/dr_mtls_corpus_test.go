package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDRCorpusAllMTLS: bookinfo's destination-rule-all-mtls.yaml,
// unmodified, through the real binary. Process A is the client side (the
// bookinfo Services, the corpus DestinationRules with ISTIO_MUTUAL at host
// level and the reviews-test-v2 VirtualService); its reviews WorkloadEntries
// (service account bookinfo-reviews, as bookinfo.yaml's pods) point at
// process B, which plays the three reviews sidecars: one istio_mtls server
// per version, each answering with its version and the client identity it
// verified. Every subset inherits ISTIO_MUTUAL: jason reaches v2 and others
// v1, both over mTLS with A's identity; a plaintext client is refused by B.
func TestDRCorpusAllMTLS(t *testing.T) {
	requireBinaries(t)
	versions := []string{"v1", "v2", "v3"}
	ports := map[string]int{}
	for _, v := range versions {
		ports[v] = freePort(t)
	}
	var entries []string
	for _, v := range versions {
		entries = append(entries, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-%s
spec:
  address: 127.0.0.1
  serviceAccount: bookinfo-reviews
  labels:
    app: reviews
    version: %s
  ports:
    http: %d
`, v, v, ports[v]))
	}
	bind := randomLoopback()
	listener := net.JoinHostPort(bind, "9080")
	a := startCaddy(t, joinDocs(append([]string{
		corpus(t, "istio-samples/bookinfo/platform/kube/bookinfo.yaml"),
		corpus(t, "istio-samples/bookinfo/networking/destination-rule-all-mtls.yaml"),
		corpus(t, "istio-samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml"),
		vsSidecar("mtls", bind, nil, 9080),
	}, entries...)...), listener)

	// B shares A's storage, so the mesh CA A created on first use.
	storage := filepath.Join(filepath.Dir(a.configFile), "home", "data", "caddy")
	if _, err := os.Stat(filepath.Join(storage, "pki", "authorities", "istio", "root.crt")); err != nil {
		t.Fatalf("process A has no mesh CA in its storage: %v", err)
	}
	servers := map[string]any{}
	for _, v := range versions {
		servers["reviews-"+v] = map[string]any{
			"listen":            []string{"127.0.0.1:" + strconv.Itoa(ports[v])},
			"listener_wrappers": []any{map[string]any{"wrapper": "istio_mtls", "identity": reviewsID}},
			"automatic_https":   map[string]any{"disable": true},
			"routes": []any{map[string]any{"handle": []any{map[string]any{
				"handler": "static_response",
				"body":    "reviews " + v + " saw {http.request.tls.client.san.uris.0}",
			}}}},
		}
	}
	startCaddyJSON(t, "caddy-reviews", map[string]any{
		"storage": map[string]any{"module": "file_system", "root": storage},
		"apps":    map[string]any{"http": map[string]any{"servers": servers}},
	}, "127.0.0.1:"+strconv.Itoa(ports["v3"]))

	client := hostClient(t, listener)
	const aID = "spiffe://cluster.local/ns/default/sa/default"
	for _, tc := range []struct {
		who     string
		headers []string
		want    string
	}{
		{"jason", []string{"end-user", "jason"}, "reviews v2 saw " + aID},
		{"anyone else", nil, "reviews v1 saw " + aID},
	} {
		got := get(t, client, "http://reviews:9080/", tc.headers...)
		if got.Status != http.StatusOK || got.Body != tc.want {
			t.Errorf("%s: got %d %q, want 200 %q", tc.who, got.Status, got.Body, tc.want)
		}
	}

	// A plaintext client, and a TLS client without a mesh certificate,
	// never get an answer from B.
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://127.0.0.1:" + strconv.Itoa(ports["v1"]) + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("a plaintext client got %d from the mTLS server, want the connection refused", resp.StatusCode)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(ports["v1"]), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		// TLS 1.3 reports a missing client certificate on the first read.
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			buf := make([]byte, 64)
			_, err = conn.Read(buf)
			if err == nil && strings.HasPrefix(string(buf), "HTTP/") {
				t.Errorf("a TLS client without a certificate got an answer: %q", buf)
			}
		}
		conn.Close()
	}
}
