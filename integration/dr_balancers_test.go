package integration

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each DestinationRule load balancer through the real binary, against
// three real backends: the distribution a client observes.

// balancerPool is service "pool" (port vsPort) over the recorders, one
// WorkloadEntry each (version = recorder name, weight from weights when
// given), plus a DestinationRule with trafficPolicy (YAML, indented for
// spec.trafficPolicy) when not empty.
func balancerPool(t *testing.T, recorders []*recorder, weights map[string]int, trafficPolicy string) string {
	t.Helper()
	docs := []string{kubeService("pool", vsPort)}
	for _, r := range recorders {
		host, port := balancerSplitAddr(t, r.addr)
		weight := ""
		if w := weights[r.name]; w > 0 {
			weight = fmt.Sprintf("  weight: %d\n", w)
		}
		docs = append(docs, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: pool-%s
spec:
  address: %s
  labels:
    app: pool
    version: %s
  ports:
    http: %s
%s`, r.name, host, r.name, port, weight))
	}
	if trafficPolicy != "" {
		docs = append(docs, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: pool\nspec:\n  host: pool\n  trafficPolicy:\n"+trafficPolicy)
	}
	return joinDocs(docs...)
}

func balancerSplitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q has no port", addr)
	}
	return addr[:i], addr[i+1:]
}

// balancerRecorders starts n recorders named a, b, c, ... answering 200 after
// the delays given (none by default).
func balancerRecorders(t *testing.T, n int, delays map[string]time.Duration) []*recorder {
	t.Helper()
	out := make([]*recorder, n)
	for i := range out {
		name := string(rune('a' + i))
		out[i] = startRecorder(t, name, http.StatusOK, delays[name])
	}
	return out
}

// shares sends n sequential requests to the pool with header pairs and
// returns how many each backend answered.
func shares(t *testing.T, client *http.Client, n int, headerPairs ...string) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for i := 0; i < n; i++ {
		a := get(t, client, fmt.Sprintf("http://pool:%d/", vsPort), headerPairs...)
		if a.Status != http.StatusOK {
			t.Fatalf("request %d: %s", i, a)
		}
		got[a.Header.Get("x-recorder")]++
	}
	return got
}

func TestDRBalancerRoundRobin(t *testing.T) {
	requireBinaries(t)
	recs := balancerRecorders(t, 3, nil)
	mesh := startVSMesh(t, balancerPool(t, recs, nil, "    loadBalancer:\n      simple: ROUND_ROBIN\n"))
	const n = 3000
	got := shares(t, hostClient(t, meshAddr(mesh)), n)
	for _, r := range recs {
		if share := float64(got[r.name]) / n; math.Abs(share-1.0/3) > 0.02 {
			t.Errorf("ROUND_ROBIN: %s got %.1f%% of %d requests, want 33.3%% +- 2 points (all: %v)", r.name, 100*share, n, got)
		}
	}
}

// TestDRBalancerWeightedEndpoints: WorkloadEntry weights 1:1:2 under
// ROUND_ROBIN (Envoy's weighted round robin): 25/25/50.
func TestDRBalancerWeightedEndpoints(t *testing.T) {
	requireBinaries(t)
	recs := balancerRecorders(t, 3, nil)
	weights := map[string]int{"a": 1, "b": 1, "c": 2}
	mesh := startVSMesh(t, balancerPool(t, recs, weights, "    loadBalancer:\n      simple: ROUND_ROBIN\n"))
	const n = 2000
	got := shares(t, hostClient(t, meshAddr(mesh)), n)
	for name, want := range map[string]float64{"a": 0.25, "b": 0.25, "c": 0.5} {
		if share := float64(got[name]) / n; math.Abs(share-want) > 0.02 {
			t.Errorf("weights 1:1:2: %s got %.1f%%, want %.0f%% +- 2 points (all: %v)", name, 100*share, 100*want, got)
		}
	}
}

func TestDRBalancerRandom(t *testing.T) {
	requireBinaries(t)
	recs := balancerRecorders(t, 3, nil)
	mesh := startVSMesh(t, balancerPool(t, recs, nil, "    loadBalancer:\n      simple: RANDOM\n"))
	const n = 3000
	got := shares(t, hostClient(t, meshAddr(mesh)), n)
	// Binomial(3000, 1/3): sigma is 0.86 points; 5 points is > 5 sigma.
	for _, r := range recs {
		if share := float64(got[r.name]) / n; math.Abs(share-1.0/3) > 0.05 {
			t.Errorf("RANDOM: %s got %.1f%%, want about 33.3%% (all: %v)", r.name, 100*share, got)
		}
	}
}

// TestDRBalancerLeastRequest: with one slow endpoint and concurrent
// clients, Istio's default balancer sends most requests to the fast
// endpoints, which finish theirs sooner.
func TestDRBalancerLeastRequest(t *testing.T) {
	requireBinaries(t)
	recs := balancerRecorders(t, 3, map[string]time.Duration{"a": 150 * time.Millisecond})
	mesh := startVSMesh(t, balancerPool(t, recs, nil, ""))
	client := hostClient(t, meshAddr(mesh))
	var (
		mu  sync.Mutex
		got = map[string]int{}
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(2 * time.Second)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := client.Get(fmt.Sprintf("http://pool:%d/", vsPort))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				got[resp.Header.Get("x-recorder")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got["a"] == 0 || got["b"] == 0 || got["c"] == 0 {
		t.Fatalf("LEAST_REQUEST: every endpoint should get some requests: %v", got)
	}
	// Round robin would give the slow endpoint a third; least request
	// gives it far less.
	if slow, fast := got["a"], min(got["b"], got["c"]); slow*3 > fast {
		t.Errorf("LEAST_REQUEST: slow endpoint got %d requests, a fast one %d: want the slow one under a third of a fast one's (all: %v)", slow, fast, got)
	}
}

// TestDRBalancerConsistentHash: ring hash on a header and maglev on a
// generated cookie keep each key on one endpoint, and spread keys.
func TestDRBalancerConsistentHash(t *testing.T) {
	requireBinaries(t)
	for _, tc := range []struct {
		name, policy string
	}{
		{"ring hash on a header", "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        ringHash:\n          minimumRingSize: 2048\n"},
		{"maglev on a query parameter", "    loadBalancer:\n      consistentHash:\n        httpQueryParameterName: user\n        maglev:\n          tableSize: 65537\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := balancerRecorders(t, 3, nil)
			mesh := startVSMesh(t, balancerPool(t, recs, nil, tc.policy))
			client := hostClient(t, meshAddr(mesh))
			used := map[string]bool{}
			for u := 0; u < 40; u++ {
				user := fmt.Sprintf("user-%d", u)
				first := ""
				for i := 0; i < 5; i++ {
					a := get(t, client, fmt.Sprintf("http://pool:%d/?user=%s", vsPort, user), "x-user", user)
					got := a.Header.Get("x-recorder")
					if first == "" {
						first = got
					} else if got != first {
						t.Fatalf("%s: request %d went to %s, the first to %s", user, i, got, first)
					}
				}
				used[first] = true
			}
			if len(used) < 3 {
				t.Errorf("40 keys reached only %d of 3 endpoints", len(used))
			}
		})
	}
}

// TestDRBalancerGeneratedCookie: consistentHash.httpCookie with a ttl:
// the first answer sets the cookie (path, Max-Age), and requests that
// send it back stay on one endpoint. As Envoy, the generated value is a
// hash of the client connection's addresses, so each session uses a
// connection of its own.
func TestDRBalancerGeneratedCookie(t *testing.T) {
	requireBinaries(t)
	recs := balancerRecorders(t, 3, nil)
	mesh := startVSMesh(t, balancerPool(t, recs, nil, "    loadBalancer:\n      consistentHash:\n        httpCookie:\n          name: session\n          path: /\n          ttl: 60s\n"))
	used := map[string]bool{}
	for c := 0; c < 20; c++ {
		client := hostClient(t, meshAddr(mesh))
		first := get(t, client, fmt.Sprintf("http://pool:%d/", vsPort))
		setCookie := first.Header.Get("Set-Cookie")
		if !strings.HasPrefix(setCookie, "session=") || !strings.Contains(setCookie, "Max-Age=60") || !strings.Contains(setCookie, "Path=/") {
			t.Fatalf("first answer's Set-Cookie = %q, want session=...; Max-Age=60; Path=/", setCookie)
		}
		cookie := strings.SplitN(setCookie, ";", 2)[0]
		backend := first.Header.Get("x-recorder")
		for i := 0; i < 5; i++ {
			a := get(t, client, fmt.Sprintf("http://pool:%d/", vsPort), "Cookie", cookie)
			if got := a.Header.Get("x-recorder"); got != backend {
				t.Fatalf("cookie %s: request %d went to %s, the first to %s", cookie, i, got, backend)
			}
			if a.Header.Get("Set-Cookie") != "" {
				t.Fatalf("a request with the cookie got another Set-Cookie: %q", a.Header.Get("Set-Cookie"))
			}
		}
		used[backend] = true
	}
	if len(used) < 2 {
		t.Errorf("20 sessions reached only %d endpoint(s)", len(used))
	}
}
