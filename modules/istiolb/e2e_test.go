package istiolb

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// proxyConfig is a Caddy config with one reverse_proxy to dials, using the
// selection policy JSON.
func proxyConfig(listen string, dials []string, policy string) string {
	upstreams := make([]string, len(dials))
	for i, d := range dials {
		upstreams[i] = fmt.Sprintf(`{"dial":%q}`, d)
	}
	return fmt.Sprintf(`{"admin":{"disabled":true,"config":{"persist":false}},"apps":{"http":{"servers":{"s":{"listen":[%q],
		"routes":[{"handle":[{"handler":"reverse_proxy","upstreams":[%s],
		"load_balancing":{"selection_policy":%s}}]}]}}}}}`, listen, strings.Join(upstreams, ","), policy)
}

// The JSON the Istio adapter writes loads as written; bad values fail at
// provisioning.
func TestPolicyJSON(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		wantErr string
	}{
		{policy: `{"policy":"ring_hash","header":"x-user","minimum_ring_size":1024}`},
		{policy: `{"policy":"maglev","cookie":{"name":"user","path":"/","ttl":"10s"},"table_size":65537}`},
		{policy: `{"policy":"maglev","cookie":{"name":"user","ttl":"0s"}}`},
		{policy: `{"policy":"istio_round_robin"}`},
		{policy: `{"policy":"istio_round_robin","warmup":{"duration":"30s"}}`},
		{policy: `{"policy":"istio_random"}`},
		{policy: `{"policy":"least_request","warmup":{"duration":"30s","minimum_percent":10,"aggression":1}}`},
		{policy: `{"policy":"ring_hash","source_ip":true}`},
		{policy: `{"policy":"ring_hash","query_parameter":"q"}`},
		{policy: `{"policy":"maglev","header":"x-user","table_size":65536}`, wantErr: "not a prime"},
		{policy: `{"policy":"ring_hash"}`, wantErr: "exactly one hash key"},
		{policy: `{"policy":"ring_hash","header":"a","source_ip":true}`, wantErr: "exactly one hash key"},
		{policy: `{"policy":"least_request","warmup":{"minimum_percent":10}}`, wantErr: "duration must be positive"},
		{policy: `{"policy":"ring_hash","header":"a","hash":"x"}`, wantErr: "unknown field"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			var cfg caddy.Config
			if err := json.Unmarshal([]byte(proxyConfig("127.0.0.1:0", []string{"127.0.0.1:9"}, tc.policy)), &cfg); err != nil {
				t.Fatal(err)
			}
			err := caddy.Validate(&cfg)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// The session cookie TTL survives decoding as "set, zero".
	var s MaglevSelection
	if err := json.Unmarshal([]byte(`{"cookie":{"name":"user","ttl":"0s"}}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.Cookie.TTL == nil || *s.Cookie.TTL != 0 {
		t.Fatalf("ttl 0s decoded as %v, want a zero TTL", s.Cookie.TTL)
	}
	// So does an explicit minimum_percent of 0, unlike an absent one.
	for in, want := range map[string]float64{
		`{"warmup":{"duration":"30s","minimum_percent":0}}`: 0,
		`{"warmup":{"duration":"30s"}}`:                     10,
	} {
		var lr LeastRequestSelection
		if err := json.Unmarshal([]byte(in), &lr); err != nil {
			t.Fatal(err)
		}
		provision(t, &lr)
		if got := *lr.Warmup.MinimumPercent; got != want {
			t.Errorf("%s: minimum_percent %v, want %v", in, got, want)
		}
	}
}

// namedBackends starts n loopback backends that answer with their name.
func namedBackends(t *testing.T, n int) (dials []string, names map[string]bool) {
	names = map[string]bool{}
	for i := range n {
		name := fmt.Sprint("backend-", i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		dials = append(dials, srv.Listener.Addr().String())
		names[name] = true
	}
	return dials, names
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Through a real reverse_proxy: a header key sticks to one backend; a
// generated maglev cookie brings the next request back to the same one.
func TestHashPoliciesThroughProxy(t *testing.T) {
	dials, _ := namedBackends(t, 4)
	client := &http.Client{}
	get := func(t *testing.T, url string, header http.Header) (string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body), resp
	}

	t.Run("ring_hash header", func(t *testing.T) {
		addr := freeAddr(t)
		if err := caddy.Load([]byte(proxyConfig(addr, dials, `{"policy":"ring_hash","header":"x-user"}`)), true); err != nil {
			t.Fatal(err)
		}
		defer caddy.Stop()
		seen := map[string]bool{}
		for user := range 20 {
			h := http.Header{"X-User": {fmt.Sprint("user-", user)}}
			first, _ := get(t, "http://"+addr+"/", h)
			seen[first] = true
			for range 5 {
				if got, _ := get(t, "http://"+addr+"/", h); got != first {
					t.Fatalf("user %d reached %s, then %s", user, first, got)
				}
			}
		}
		if len(seen) < 2 {
			t.Errorf("20 users reached only %v", seen)
		}
	})

	t.Run("maglev cookie", func(t *testing.T) {
		addr := freeAddr(t)
		if err := caddy.Load([]byte(proxyConfig(addr, dials, `{"policy":"maglev","cookie":{"name":"user","path":"/","ttl":"10s"}}`)), true); err != nil {
			t.Fatal(err)
		}
		defer caddy.Stop()
		for range 10 {
			// A new connection each time, so generated cookies differ.
			client.CloseIdleConnections()
			first, resp := get(t, "http://"+addr+"/", nil)
			cookies := resp.Cookies()
			if len(cookies) != 1 || cookies[0].Name != "user" || cookies[0].Path != "/" || cookies[0].MaxAge != 10 || !cookies[0].HttpOnly {
				t.Fatalf("Set-Cookie %q, want user=<hash>; Path=/; Max-Age=10; HttpOnly", resp.Header.Values("Set-Cookie"))
			}
			h := http.Header{"Cookie": {"user=" + cookies[0].Value}}
			for range 5 {
				got, resp := get(t, "http://"+addr+"/", h)
				if got != first {
					t.Fatalf("with cookie %s reached %s, first %s", cookies[0].Value, got, first)
				}
				if len(resp.Cookies()) != 0 {
					t.Fatal("cookie set again")
				}
			}
		}
	})
}
