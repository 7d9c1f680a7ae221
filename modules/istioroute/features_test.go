package istioroute

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

// funcBackend is a loopback backend running handler.
func funcBackend(t testing.TB, name string, handler http.HandlerFunc) *backend {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return &backend{name: name, srv: srv}
}

// headerEchoBackend answers with its name and what it received, in headers:
// X-Backend, X-Path (escaped path and query), X-Host, X-Body, and every
// request header as X-Got-<name>.
func headerEchoBackend(t testing.TB, name string) *backend {
	return funcBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for k, v := range r.Header {
			w.Header()["X-Got-"+k] = v
		}
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Path", r.URL.RequestURI())
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Body", string(body))
		w.Header().Set("X-Upstream-Header", "upstream")
		_, _ = io.WriteString(w, name)
	})
}

// deadEndpoint is a workload on a loopback port where nothing listens.
func deadEndpoint(t testing.TB) *istioapp.Workload {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return &istioapp.Workload{Address: "127.0.0.1", Ports: map[string]uint32{"http": port}}
}

// addService adds service host (port 80) with these endpoints and its
// cluster outbound|80||host to app.
func addService(app *istioapp.App, host string, endpoints ...*istioapp.Workload) string {
	app.Services = append(app.Services, &istioapp.Service{
		Hostname: host, Resolution: "STATIC",
		Ports:     []*istioapp.ServicePort{{Number: 80, Name: "http"}},
		Endpoints: endpoints,
	})
	name := cluster(80, "", host)
	app.Clusters = append(app.Clusters, &istioapp.Cluster{Name: name, Service: host, Port: 80})
	return name
}

// front serves h on a loopback server, as Caddy's HTTP server would:
// with a prepared request, a handler error written as its status.
func front(t testing.TB, h *Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
			return errors.New("next handler called")
		}))
		if err != nil {
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				w.WriteHeader(he.StatusCode)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// response is what the client got.
type response struct {
	code   int
	body   string
	header http.Header
}

// send makes a request with a real client; header is name, value pairs.
func send(t testing.TB, srv *httptest.Server, method, target, host, body string, header ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: string(b), header: resp.Header}
}

// single is a virtual host for host with one route.
func single(host string, rt *Route) *VirtualHost {
	return &VirtualHost{Name: host, Domains: []string{host}, Routes: []*Route{rt}}
}

func TestHeaderOperations(t *testing.T) {
	app := new(istioapp.App)
	a := addService(app, "a.test", headerEchoBackend(t, "a").endpoint(nil))
	h := provisionHandler(t, newContext(t, app),
		single("a.test", &Route{
			Route: []*Destination{{Cluster: a, Headers: &Headers{
				Request:  &HeaderOperations{Set: map[string]string{"x-both": "destination"}, Add: map[string]string{"x-dest": "d"}},
				Response: &HeaderOperations{Set: map[string]string{"x-resp-both": "destination"}},
			}}},
			Headers: &Headers{
				Request: &HeaderOperations{
					Set:    map[string]string{"x-both": "route", "x-set": "set", "x-replaced": "new"},
					Add:    map[string]string{"x-added": "second"},
					Remove: []string{"x-secret"},
				},
				Response: &HeaderOperations{
					Set:    map[string]string{"x-resp-both": "route", "x-resp-set": "s"},
					Add:    map[string]string{"x-resp-add": "r"},
					Remove: []string{"x-upstream-header"},
				},
			},
		}),
		single("direct.test", &Route{
			DirectResponse: &DirectResponse{Status: 200, Body: []byte(`{"ok":true}`)},
			Headers:        &Headers{Response: &HeaderOperations{Set: map[string]string{"content-type": "application/json"}}},
		}),
		single("redirect.test", &Route{
			Redirect: &Redirect{URI: "/new"},
			Headers:  &Headers{Response: &HeaderOperations{Add: map[string]string{"x-redirected": "yes"}}},
		}),
	)
	srv := front(t, h)

	got := send(t, srv, "GET", "/", "a.test", "", "X-Secret", "s", "X-Replaced", "old", "X-Added", "first")
	for name, want := range map[string]string{
		"X-Got-X-Both":      "destination",
		"X-Got-X-Set":       "set",
		"X-Got-X-Replaced":  "new",
		"X-Got-X-Added":     "first,second",
		"X-Got-X-Dest":      "d",
		"X-Got-X-Secret":    "",
		"X-Resp-Both":       "destination",
		"X-Resp-Set":        "s",
		"X-Resp-Add":        "r",
		"X-Upstream-Header": "",
	} {
		if v := strings.Join(got.header.Values(name), ","); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}

	got = send(t, srv, "GET", "/", "direct.test", "")
	if got.code != 200 || got.header.Get("Content-Type") != "application/json" || got.body != `{"ok":true}` {
		t.Errorf("direct response: %d %q %q", got.code, got.header.Get("Content-Type"), got.body)
	}
	got = send(t, srv, "GET", "/old", "redirect.test", "")
	if got.code != 301 || got.header.Get("X-Redirected") != "yes" || got.header.Get("Location") != "http://redirect.test/new" {
		t.Errorf("redirect: %d %v", got.code, got.header)
	}
}

func TestRewrite(t *testing.T) {
	app := new(istioapp.App)
	a := addService(app, "a.test", headerEchoBackend(t, "a").endpoint(nil))
	to := []*Destination{{Cluster: a}}
	h := provisionHandler(t, newContext(t, app), &VirtualHost{Name: "a", Domains: []string{"a.test"}, Routes: []*Route{
		{Match: []*Match{{URI: prefix("/api/")}}, Rewrite: &Rewrite{URI: "/v2/"}, Route: to},
		{Match: []*Match{{URI: exact("/login")}}, Rewrite: &Rewrite{URI: "/auth/login"}, Route: to},
		{Match: []*Match{{URI: regex("/regex/.*")}}, Rewrite: &Rewrite{URI: "/whole"}, Route: to},
		{Match: []*Match{{URI: prefix("/re/")}}, Rewrite: &Rewrite{URIRegex: &RegexRewrite{Match: `^/re/([^/]+)/(\d+)$`, Rewrite: `/items/\2/\1$`}}, Route: to},
		{Match: []*Match{{Headers: map[string]*StringMatch{"x-no-uri": {}}}}, Rewrite: &Rewrite{URI: "/root"}, Route: to},
		{Match: []*Match{{URI: prefix("/host")}}, Rewrite: &Rewrite{Authority: "internal.example"}, Route: to},
	}})
	srv := front(t, h)

	for _, tc := range []struct {
		target, path, host string
		header             []string
	}{
		{"/api/users?x=1", "/v2/users?x=1", "a.test", nil},
		{"/login?next=/", "/auth/login?next=/", "a.test", nil},
		{"/regex/a/b", "/whole", "a.test", nil},
		{"/re/shoes/42", "/items/42/shoes$", "a.test", nil},
		{"/other", "/rootother", "a.test", []string{"X-No-Uri", "1"}},
		{"/host/x", "/host/x", "internal.example", nil},
	} {
		got := send(t, srv, "GET", tc.target, "a.test", "", tc.header...)
		if got.code != 200 || got.header.Get("X-Path") != tc.path || got.header.Get("X-Host") != tc.host {
			t.Errorf("%s: %d path %q host %q, want path %q host %q", tc.target, got.code, got.header.Get("X-Path"), got.header.Get("X-Host"), tc.path, tc.host)
		}
	}
	got := send(t, srv, "GET", "/host/x", "a.test", "")
	if xfh := got.header.Get("X-Got-X-Forwarded-Host"); xfh != "a.test" {
		t.Errorf("X-Forwarded-Host %q after an authority rewrite, want the original a.test", xfh)
	}
}

func TestFault(t *testing.T) {
	var hits atomic.Int32
	app := new(istioapp.App)
	a := addService(app, "a.test", funcBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "a")
	}).endpoint(nil))
	h := provisionHandler(t, newContext(t, app),
		single("abort.test", &Route{
			Route:   []*Destination{{Cluster: a}},
			Fault:   &istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 503, Percentage: 100}},
			Retries: &RetryPolicy{Attempts: 3, RetryOn: []string{"5xx"}},
		}),
		single("delay.test", &Route{
			Route:   []*Destination{{Cluster: a}},
			Fault:   &istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: caddy.Duration(300 * time.Millisecond), Percentage: 100}},
			Timeout: caddy.Duration(200 * time.Millisecond),
		}),
	)
	srv := front(t, h)

	if got := send(t, srv, "GET", "/", "abort.test", ""); got.code != 503 {
		t.Errorf("abort: status %d, want 503", got.code)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("abort: upstream reached %d times, want 0 (an injected abort is not retried)", n)
	}
	// The delay is longer than the route timeout, which starts after it.
	if got := send(t, srv, "GET", "/", "delay.test", ""); got.code != 200 || got.body != "a" {
		t.Errorf("delay: %d %q, want 200 a", got.code, got.body)
	}
}

func TestRetries(t *testing.T) {
	var busyHits, slowHits atomic.Int32
	busy := funcBackend(t, "busy", func(w http.ResponseWriter, r *http.Request) {
		busyHits.Add(1)
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("X-Busy", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "busy")
	})
	ok := headerEchoBackend(t, "ok")
	// slow hangs on its first request and answers the others at once.
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := funcBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if slowHits.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "slow")
	})
	hang := funcBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	notFound := funcBackend(t, "missing", func(w http.ResponseWriter, r *http.Request) {
		busyHits.Add(1)
		http.NotFound(w, r)
	})

	var grpcHits atomic.Int32
	grpcBackend := funcBackend(t, "grpc", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		if grpcHits.Add(1) == 1 { // trailers-only UNAVAILABLE
			w.Header().Set("Grpc-Status", "14")
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = io.WriteString(w, "message")
		w.Header().Set("Grpc-Status", "0")
	})

	var endlessHits atomic.Int32
	endless := funcBackend(t, "endless", func(w http.ResponseWriter, r *http.Request) {
		if endlessHits.Add(1) > 1 {
			_, _ = io.WriteString(w, "fine")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(make([]byte, 200<<10))
		w.(http.Flusher).Flush()
		select { // a 503 whose body never ends
		case <-release:
		case <-r.Context().Done():
		}
	})

	app := new(istioapp.App)
	mixed := addService(app, "mixed.test", busy.endpoint(nil), ok.endpoint(nil))
	endlessCluster := addService(app, "endless.test", endless.endpoint(nil))
	grpcCluster := addService(app, "grpc.test", grpcBackend.endpoint(nil))
	allBusy := addService(app, "busy.test", busy.endpoint(nil))
	dead := addService(app, "dead.test", deadEndpoint(t), ok.endpoint(nil))
	slowCluster := addService(app, "slow.test", slow.endpoint(nil))
	hangCluster := addService(app, "hang.test", hang.endpoint(nil))
	missing := addService(app, "missing.test", notFound.endpoint(nil))
	retry := func(on ...string) *RetryPolicy {
		return &RetryPolicy{Attempts: 1, RetryOn: on, Backoff: caddy.Duration(time.Millisecond)}
	}
	h := provisionHandler(t, newContext(t, app),
		single("mixed.test", &Route{Route: []*Destination{{Cluster: mixed}}, Retries: retry("5xx")}),
		single("codes.test", &Route{Route: []*Destination{{Cluster: mixed}}, Retries: &RetryPolicy{Attempts: 1, RetryOn: []string{"retriable-status-codes"}, RetriableStatusCodes: []int{503}}}),
		single("noretry.test", &Route{Route: []*Destination{{Cluster: mixed}}}),
		single("busy.test", &Route{Route: []*Destination{{Cluster: allBusy}}, Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"gateway-error"}}}),
		single("dead.test", &Route{Route: []*Destination{{Cluster: dead}}, Retries: retry()}), // Istio's default retry_on
		single("slow.test", &Route{Route: []*Destination{{Cluster: slowCluster}}, Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}, PerTryTimeout: caddy.Duration(200 * time.Millisecond)}}),
		single("hang.test", &Route{Route: []*Destination{{Cluster: hangCluster}}, Timeout: caddy.Duration(200 * time.Millisecond), Retries: &RetryPolicy{Attempts: 5, RetryOn: []string{"5xx"}, PerTryTimeout: caddy.Duration(150 * time.Millisecond)}}),
		single("endless.test", &Route{Route: []*Destination{{Cluster: endlessCluster}}, Retries: retry("5xx")}),
		single("grpc.test", &Route{Route: []*Destination{{Cluster: grpcCluster}}, Retries: &RetryPolicy{Attempts: 2}}),
		single("missing.test", &Route{Route: []*Destination{{Cluster: missing}}, Retries: retry("5xx", "gateway-error")}),
	)
	srv := front(t, h)

	t.Run("retry on 503 succeeds on the other host", func(t *testing.T) {
		for _, host := range []string{"mixed.test", "codes.test"} {
			for i := range 20 {
				got := send(t, srv, "GET", "/", host, "")
				if got.code != 200 || got.body != "ok" || got.header.Get("X-Busy") != "" {
					t.Fatalf("%s request %d: %d %q %v", host, i, got.code, got.body, got.header)
				}
			}
		}
	})

	t.Run("POST body replayed", func(t *testing.T) {
		for i := range 10 {
			got := send(t, srv, "POST", "/", "mixed.test", "payload-"+strconv.Itoa(i))
			if got.code != 200 || got.header.Get("X-Body") != "payload-"+strconv.Itoa(i) {
				t.Fatalf("request %d: %d body seen %q", i, got.code, got.header.Get("X-Body"))
			}
		}
	})

	t.Run("without retries the 503 passes", func(t *testing.T) {
		seen503 := false
		for range 30 {
			if got := send(t, srv, "GET", "/", "noretry.test", ""); got.code == 503 {
				seen503 = true
				break
			}
		}
		if !seen503 {
			t.Error("no 503 in 30 requests over a half-busy cluster without retries")
		}
	})

	t.Run("attempts exhausted pass the last response through", func(t *testing.T) {
		busyHits.Store(0)
		got := send(t, srv, "GET", "/", "busy.test", "")
		if got.code != 503 || got.body != "busy" || got.header.Get("X-Busy") != "1" {
			t.Errorf("got %d %q %v, want the upstream's 503 busy", got.code, got.body, got.header)
		}
		if n := busyHits.Load(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
	})

	t.Run("connect failure retried by default", func(t *testing.T) {
		for i := range 10 {
			if got := send(t, srv, "GET", "/", "dead.test", ""); got.code != 200 || got.body != "ok" {
				t.Fatalf("request %d: %d %q", i, got.code, got.body)
			}
		}
	})

	t.Run("per-try timeout then success", func(t *testing.T) {
		got := send(t, srv, "GET", "/", "slow.test", "")
		if got.code != 200 || got.body != "slow" {
			t.Errorf("got %d %q, want 200 slow", got.code, got.body)
		}
		if n := slowHits.Load(); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})

	t.Run("route timeout covers retries", func(t *testing.T) {
		got := send(t, srv, "GET", "/", "hang.test", "")
		if got.code != 504 || got.body != "upstream request timeout" {
			t.Errorf("got %d %q, want 504 upstream request timeout", got.code, got.body)
		}
	})

	t.Run("a discarded response with an endless body is cut", func(t *testing.T) {
		if got := send(t, srv, "GET", "/", "endless.test", ""); got.code != 200 || got.body != "fine" {
			t.Errorf("got %d %q, want 200 fine", got.code, got.body)
		}
	})

	t.Run("gRPC unavailable retried by default, trailers passed", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.URL+"/pkg.Service/Method", strings.NewReader("request"))
		req.Host = "grpc.test"
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "message" || resp.Trailer.Get("Grpc-Status") != "0" || resp.Header.Get("Grpc-Status") != "" {
			t.Errorf("got %q, header %v, trailer %v", body, resp.Header, resp.Trailer)
		}
		if n := grpcHits.Load(); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})

	t.Run("non-retriable status not retried", func(t *testing.T) {
		busyHits.Store(0)
		if got := send(t, srv, "GET", "/", "missing.test", ""); got.code != 404 {
			t.Errorf("status %d, want 404", got.code)
		}
		if n := busyHits.Load(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
	})
}

func TestRouteTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	app := new(istioapp.App)
	hang := addService(app, "hang.test", funcBackend(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}).endpoint(nil))
	fast := addService(app, "fast.test", headerEchoBackend(t, "fast").endpoint(nil))
	h := provisionHandler(t, newContext(t, app),
		single("hang.test", &Route{Route: []*Destination{{Cluster: hang}}, Timeout: caddy.Duration(100 * time.Millisecond)}),
		single("fast.test", &Route{Route: []*Destination{{Cluster: fast}}, Timeout: caddy.Duration(5 * time.Second)}),
	)
	srv := front(t, h)
	if got := send(t, srv, "GET", "/", "hang.test", ""); got.code != 504 || got.body != "upstream request timeout" {
		t.Errorf("hanging upstream: %d %q, want 504 upstream request timeout", got.code, got.body)
	}
	if got := send(t, srv, "GET", "/", "fast.test", ""); got.code != 200 || got.body != "fast" {
		t.Errorf("fast upstream: %d %q", got.code, got.body)
	}
}

func TestMirror(t *testing.T) {
	type copyOf struct{ host, path, body, header string }
	copies := make(chan copyOf, 10)
	release := make(chan struct{})
	var once atomic.Bool
	t.Cleanup(func() {
		if once.CompareAndSwap(false, true) {
			close(release)
		}
	})
	mirrorBackend := funcBackend(t, "mirror", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		copies <- copyOf{r.Host, r.URL.Path, string(body), r.Header.Get("X-Route")}
		<-release // hang until the client has its response
		w.WriteHeader(http.StatusInternalServerError)
	})
	app := new(istioapp.App)
	primary := addService(app, "primary.test", headerEchoBackend(t, "primary").endpoint(nil))
	mirrorCluster := addService(app, "mirror.test", mirrorBackend.endpoint(nil))
	deadMirror := addService(app, "deadmirror.test", deadEndpoint(t))
	h := provisionHandler(t, newContext(t, app),
		single("primary.test", &Route{
			Route:   []*Destination{{Cluster: primary}},
			Mirrors: []*Mirror{{Cluster: mirrorCluster, Percentage: 100}, {Cluster: deadMirror, Percentage: 100}, {Cluster: mirrorCluster, Percentage: 0}},
			Headers: &Headers{Request: &HeaderOperations{Set: map[string]string{"x-route": "set"}}},
		}),
	)
	srv := front(t, h)

	got := send(t, srv, "POST", "/items", "primary.test", "the body")
	if got.code != 200 || got.body != "primary" || got.header.Get("X-Body") != "the body" {
		t.Errorf("primary: %d %q body seen %q", got.code, got.body, got.header.Get("X-Body"))
	}
	// The client has its answer while the mirror still hangs.
	once.Store(true)
	close(release)
	select {
	case c := <-copies:
		want := copyOf{"primary.test", "/items", "the body", "set"}
		if c != want {
			t.Errorf("mirror got %+v, want %+v", c, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mirror got no copy")
	}
	select {
	case c := <-copies:
		t.Errorf("a second copy (percentage 0 mirrors nothing): %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestCORS(t *testing.T) {
	var hits atomic.Int32
	app := new(istioapp.App)
	a := addService(app, "a.test", funcBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "upstream-value")
		_, _ = io.WriteString(w, "a")
	}).endpoint(nil))
	yes := true
	policy := func(unmatched string) *CORSPolicy {
		return &CORSPolicy{
			AllowOrigins:        []*StringMatch{exact("https://app.example"), regex(`https://.*\.trusted\.example`)},
			AllowMethods:        []string{"GET", "POST"},
			AllowHeaders:        []string{"X-Token", "Content-Type"},
			ExposeHeaders:       []string{"X-Request-Id"},
			MaxAge:              3600,
			AllowCredentials:    &yes,
			UnmatchedPreflights: unmatched,
		}
	}
	h := provisionHandler(t, newContext(t, app),
		single("a.test", &Route{Route: []*Destination{{Cluster: a}}, CORS: policy("")}),
		single("ignore.test", &Route{Route: []*Destination{{Cluster: a}}, CORS: policy("IGNORE")}),
	)
	srv := front(t, h)
	preflight := func(host, origin string) response {
		return send(t, srv, "OPTIONS", "/", host, "", "Origin", origin, "Access-Control-Request-Method", "POST")
	}

	hits.Store(0)
	got := preflight("a.test", "https://x.trusted.example")
	want := map[string]string{
		"Access-Control-Allow-Origin":      "https://x.trusted.example",
		"Access-Control-Allow-Methods":     "GET,POST",
		"Access-Control-Allow-Headers":     "X-Token,Content-Type",
		"Access-Control-Max-Age":           "3600",
		"Access-Control-Allow-Credentials": "true",
	}
	if got.code != 200 || hits.Load() != 0 {
		t.Errorf("matched preflight: %d, upstream hits %d; want 200 answered locally", got.code, hits.Load())
	}
	for k, v := range want {
		if got.header.Get(k) != v {
			t.Errorf("matched preflight: %s = %q, want %q", k, got.header.Get(k), v)
		}
	}

	got = preflight("a.test", "https://evil.example")
	if got.code != 200 || got.body != "a" || hits.Load() != 1 {
		t.Errorf("unmatched preflight: %d %q hits %d; want forwarded upstream", got.code, got.body, hits.Load())
	}
	got = preflight("ignore.test", "https://evil.example")
	if got.code != 200 || got.body != "" || hits.Load() != 1 || got.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unmatched preflight with IGNORE: %d %q hits %d %v; want 200 answered locally without CORS headers", got.code, got.body, hits.Load(), got.header)
	}

	got = send(t, srv, "GET", "/", "a.test", "", "Origin", "https://app.example")
	if got.body != "a" || got.header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		got.header.Get("Access-Control-Expose-Headers") != "X-Request-Id" || got.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("simple request: %q %v", got.body, got.header)
	}
	got = send(t, srv, "GET", "/", "a.test", "", "Origin", "https://evil.example")
	if got.header.Get("Access-Control-Allow-Origin") != "upstream-value" || got.header.Get("Access-Control-Expose-Headers") != "" {
		t.Errorf("simple request from another origin: %v; want the upstream's headers untouched", got.header)
	}
}

func TestProvisionFeatureErrors(t *testing.T) {
	ctx := newContext(t, nil)
	to := []*Destination{{Cluster: "c"}}
	for _, tc := range []struct {
		route *Route
		want  string
	}{
		{&Route{Route: to, Retries: &RetryPolicy{Attempts: 1, RetryOn: []string{"sometimes"}}}, "unknown retry_on"},
		{&Route{Route: to, Retries: &RetryPolicy{Attempts: -1}}, "must not be negative"},
		{&Route{Route: to, Rewrite: &Rewrite{URI: "/a", URIRegex: &RegexRewrite{Match: "a", Rewrite: "b"}}}, "exclusive"},
		{&Route{Route: to, Rewrite: &Rewrite{URIRegex: &RegexRewrite{Match: "(", Rewrite: "b"}}}, "uri_regex"},
		{&Route{Route: to, Headers: &Headers{Request: &HeaderOperations{Set: map[string]string{"host": "x"}}}}, "rewrite.authority"},
		{&Route{Route: []*Destination{{Cluster: "c", Headers: &Headers{Response: &HeaderOperations{Remove: []string{":status"}}}}}}, "pseudo-headers"},
		{&Route{Route: to, CORS: &CORSPolicy{UnmatchedPreflights: "DROP"}}, "unmatched_preflights"},
		{&Route{Route: to, Mirrors: []*Mirror{{Cluster: "c", Percentage: 101}}}, "percentage"},
		{&Route{Route: to, Timeout: caddy.Duration(-time.Second)}, "timeout"},
		{&Route{Route: to, Fault: &istiofault.Fault{}}, "fault"},
	} {
		h := new(Handler)
		h.VirtualHosts = []*VirtualHost{single("a", tc.route)}
		err := h.Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.route, err, tc.want)
		}
	}
}

func TestRetryBackoff(t *testing.T) {
	p, err := compileRetryPolicy(&RetryPolicy{Attempts: 10})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 10; n++ {
		limit := min(time.Duration((1<<n)-1)*defaultRetryBackoff, 10*defaultRetryBackoff)
		for range 100 {
			if d := p.backoff(n); d < 0 || d >= limit {
				t.Fatalf("backoff(%d) = %v, want in [0, %v)", n, d, limit)
			}
		}
	}
}

func TestGoExpansion(t *testing.T) {
	for in, want := range map[string]string{
		`/\1/\2`:  `/${1}/${2}`,
		`/a$b`:    `/a$$b`,
		`\10x`:    `${10}x`,
		`/static`: `/static`,
	} {
		if got := goExpansion(in); got != want {
			t.Errorf("goExpansion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStreamingThroughRetries(t *testing.T) {
	clientRead := make(chan struct{})
	streamed := make(chan bool, 1)
	app := new(istioapp.App)
	stream := addService(app, "stream.test", streamingBackend(t, clientRead, streamed).endpoint(nil))
	h := provisionHandler(t, newContext(t, app), single("stream.test", &Route{
		Route:   []*Destination{{Cluster: stream}},
		Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}},
		Timeout: caddy.Duration(10 * time.Second),
		Headers: &Headers{Response: &HeaderOperations{Set: map[string]string{"x-route": "1"}}},
	}))
	srv := front(t, h)
	req, _ := http.NewRequest("GET", srv.URL+"/events", nil)
	req.Host = "stream.test"
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Route") != "1" {
		t.Errorf("response header operations not applied: %v", resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	if first, err := r.ReadString('\n'); err != nil || first != "first\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	close(clientRead)
	if second, err := r.ReadString('\n'); err != nil || second != "second\n" {
		t.Fatalf("second chunk %q, %v", second, err)
	}
	if !<-streamed {
		t.Error("the first chunk reached the client only after the response ended")
	}
}

func TestPerTryTimeoutSparesAStartedResponse(t *testing.T) {
	var hits atomic.Int32
	app := new(istioapp.App)
	slowBody := addService(app, "slowbody.test", funcBackend(t, "slowbody", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "start ")
		w.(http.Flusher).Flush()
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "end")
	}).endpoint(nil))
	h := provisionHandler(t, newContext(t, app), single("slowbody.test", &Route{
		Route:   []*Destination{{Cluster: slowBody}},
		Retries: &RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}, PerTryTimeout: caddy.Duration(100 * time.Millisecond)},
	}))
	srv := front(t, h)
	if got := send(t, srv, "GET", "/", "slowbody.test", ""); got.code != 200 || got.body != "start end" {
		t.Errorf("got %d %q, want 200 \"start end\"", got.code, got.body)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}
