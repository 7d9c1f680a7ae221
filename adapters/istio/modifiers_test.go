package istio

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// testRef is a field of a VirtualService, for functions that warn.
func testRef(path string) fieldRef {
	return fieldRef{&istioyaml.Object{Kind: "VirtualService", Namespace: "default", Name: "vs"}, path}
}

// problemLines renders the translator's problems as "field: message".
func problemLines(t *translator) []string {
	var out []string
	for _, p := range t.problems {
		out = append(out, p.Field+": "+p.Message)
	}
	return out
}

func TestRetryPolicyOf(t *testing.T) {
	def := []string{"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
	for _, tc := range []struct {
		name           string
		in             *networking.HTTPRetry
		consistentHash bool
		want           *istioroute.RetryPolicy
	}{
		{"absent: Istio's default", nil, false, &istioroute.RetryPolicy{Attempts: 2, RetryOn: def}},
		{"absent with consistent hashing: no previous-hosts preference", nil, true, &istioroute.RetryPolicy{Attempts: 2, RetryOn: def, AllowPreviousHosts: true}},
		{"attempts 0: no policy", &networking.HTTPRetry{Attempts: 0}, false, nil},
		{"attempts without retryOn: default retryOn", &networking.HTTPRetry{Attempts: 4}, false, &istioroute.RetryPolicy{Attempts: 4, RetryOn: def}},
		{
			"tokens trimmed, codes split out, retriable-status-codes appended once",
			&networking.HTTPRetry{Attempts: 3, RetryOn: " 5xx , 503,,reset ,429"},
			false,
			&istioroute.RetryPolicy{Attempts: 3, RetryOn: []string{"5xx", "reset", "retriable-status-codes"}, RetriableStatusCodes: []int{503, 429}},
		},
		{
			"retriable-status-codes already listed",
			&networking.HTTPRetry{Attempts: 1, RetryOn: "retriable-status-codes,502"},
			false,
			&istioroute.RetryPolicy{Attempts: 1, RetryOn: []string{"retriable-status-codes"}, RetriableStatusCodes: []int{502}},
		},
		{
			"an integer that is no status code stays a token",
			&networking.HTTPRetry{Attempts: 1, RetryOn: "599"},
			false,
			&istioroute.RetryPolicy{Attempts: 1, RetryOn: []string{"599"}},
		},
		{
			"perTryTimeout, backoff, retryRemoteLocalities, retryIgnorePreviousHosts false",
			&networking.HTTPRetry{
				Attempts:                 2,
				PerTryTimeout:            durationpb.New(time.Second),
				Backoff:                  durationpb.New(50 * time.Millisecond),
				RetryRemoteLocalities:    wrapperspb.Bool(true),
				RetryIgnorePreviousHosts: wrapperspb.Bool(false),
			},
			false,
			&istioroute.RetryPolicy{Attempts: 2, RetryOn: def, PerTryTimeout: 1e9, Backoff: 50e6, RetryRemoteLocalities: true, AllowPreviousHosts: true},
		},
		{
			"retryIgnorePreviousHosts true wins over consistent hashing",
			&networking.HTTPRetry{Attempts: 2, RetryIgnorePreviousHosts: wrapperspb.Bool(true)},
			true,
			&istioroute.RetryPolicy{Attempts: 2, RetryOn: def},
		},
		{
			"explicit policy with consistent hashing",
			&networking.HTTPRetry{Attempts: 2},
			true,
			&istioroute.RetryPolicy{Attempts: 2, RetryOn: def, AllowPreviousHosts: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retryPolicyOf(tc.in, tc.consistentHash); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, tc.want))
			}
		})
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHeadersOf(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        *networking.Headers
		want      *istioroute.Headers
		authority string
		warnings  []string
	}{
		{name: "nil", in: nil},
		{
			name: "host in set becomes the authority",
			in: &networking.Headers{Request: &networking.Headers_HeaderOperations{
				Set: map[string]string{"Host": "a.example", "x-a": "1"},
			}},
			want:      &istioroute.Headers{Request: &istioroute.HeaderOperations{Set: map[string]string{"x-a": "1"}}},
			authority: "a.example",
		},
		{
			name: "set beats add",
			in: &networking.Headers{Request: &networking.Headers_HeaderOperations{
				Set: map[string]string{":authority": "set.example"},
				Add: map[string]string{"host": "add.example"},
			}},
			authority: "set.example",
		},
		{
			name: "add alone",
			in: &networking.Headers{Request: &networking.Headers_HeaderOperations{
				Add: map[string]string{":authority": "add.example", "x-b": "2"},
			}},
			want:      &istioroute.Headers{Request: &istioroute.HeaderOperations{Add: map[string]string{"x-b": "2"}}},
			authority: "add.example",
		},
		{
			name: "other pseudo-headers and host elsewhere are dropped with a warning",
			in: &networking.Headers{
				Request: &networking.Headers_HeaderOperations{
					Set:    map[string]string{":path": "/x"},
					Remove: []string{"host", "x-c", ":method"},
				},
				Response: &networking.Headers_HeaderOperations{
					Set: map[string]string{"host": "h", "x-d": "4"},
				},
			},
			want: &istioroute.Headers{
				Request:  &istioroute.HeaderOperations{Remove: []string{"x-c"}},
				Response: &istioroute.HeaderOperations{Set: map[string]string{"x-d": "4"}},
			},
			warnings: []string{
				"h.request.set.:path: a pseudo-header or host cannot be changed here: dropped (as in Istio)",
				"h.response.set.host: a pseudo-header or host cannot be changed here: dropped (as in Istio)",
				"h.request.remove[0]: a pseudo-header or host cannot be removed: dropped (as in Istio)",
				"h.request.remove[2]: a pseudo-header or host cannot be removed: dropped (as in Istio)",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(nil, Options{})
			got, authority := tr.headersOf(testRef("h"), tc.in)
			if !reflect.DeepEqual(got, tc.want) || authority != tc.authority {
				t.Errorf("got %s, %q\nwant %s, %q", jsonOf(t, got), authority, jsonOf(t, tc.want), tc.authority)
			}
			if w := problemLines(tr); !sameStrings(w, tc.warnings) {
				t.Errorf("warnings:\n got %q\nwant %q", w, tc.warnings)
			}
		})
	}
}

// sameStrings compares as sets of lines, ignoring order.
func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := make(map[string]int)
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

func TestFaultOf(t *testing.T) {
	delay := func(d *networking.HTTPFaultInjection_Delay) *networking.HTTPFaultInjection {
		return &networking.HTTPFaultInjection{Delay: d}
	}
	fixed := &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(5 * time.Second)}
	for _, tc := range []struct {
		name    string
		in      *networking.HTTPFaultInjection
		want    *istiofault.Fault
		warning string
	}{
		{
			name: "delay with percentage",
			in:   delay(&networking.HTTPFaultInjection_Delay{HttpDelayType: fixed, Percentage: &networking.Percent{Value: 50}}),
			want: &istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: 5e9, Percentage: 50}},
		},
		{
			name: "percentage truncated to parts per million",
			in:   delay(&networking.HTTPFaultInjection_Delay{HttpDelayType: fixed, Percentage: &networking.Percent{Value: 0.00019}}),
			want: &istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: 5e9, Percentage: 0.0001}},
		},
		{
			name: "delay with the deprecated percent",
			in:   delay(&networking.HTTPFaultInjection_Delay{HttpDelayType: fixed, Percent: 30}),
			want: &istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: 5e9, Percentage: 30}},
		},
		{
			name:    "delay without percentage: 0%",
			in:      delay(&networking.HTTPFaultInjection_Delay{HttpDelayType: fixed}),
			want:    &istiofault.Fault{Delay: &istiofault.Delay{FixedDelay: 5e9}},
			warning: "f.delay: no percentage: no request is delayed",
		},
		{
			name: "abort with HTTP status and percentage",
			in: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
				ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503}, Percentage: &networking.Percent{Value: 10.5},
			}},
			want: &istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 503, Percentage: 10.5}},
		},
		{
			name: "abort with gRPC status without percentage: 0%",
			in: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
				ErrorType: &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "UNAVAILABLE"},
			}},
			want:    &istiofault.Fault{Abort: &istiofault.Abort{GRPCStatus: "UNAVAILABLE"}},
			warning: "f.abort: no percentage: no request is aborted",
		},
		{
			name: "abort without status is dropped",
			in: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
				Percentage: &networking.Percent{Value: 100},
			}},
			want:    nil,
			warning: "f.abort: abort configured, but error type not set: dropped",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(nil, Options{})
			got := tr.faultOf(testRef("f"), tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, tc.want))
			}
			w := problemLines(tr)
			if tc.warning == "" && len(w) > 0 || tc.warning != "" && !hasWarning(w, tc.warning) {
				t.Errorf("warnings %q, want %q", w, tc.warning)
			}
		})
	}
}

func TestCorsOf(t *testing.T) {
	exact := func(s string) *istioroute.StringMatch { return &istioroute.StringMatch{Exact: &s} }
	for _, tc := range []struct {
		name string
		in   *networking.CorsPolicy
		want *istioroute.CORSPolicy
	}{
		{
			name: "allowOrigins wins over the deprecated allowOrigin; empty matchers dropped",
			in: &networking.CorsPolicy{
				AllowOrigins: []*networking.StringMatch{
					{MatchType: &networking.StringMatch_Exact{Exact: "https://a.example"}},
					{},
				},
				AllowOrigin: []string{"https://ignored.example"},
			},
			want: &istioroute.CORSPolicy{AllowOrigins: []*istioroute.StringMatch{exact("https://a.example")}},
		},
		{
			name: "the deprecated allowOrigin as exact matches",
			in:   &networking.CorsPolicy{AllowOrigin: []string{"https://a.example", "https://b.example"}},
			want: &istioroute.CORSPolicy{AllowOrigins: []*istioroute.StringMatch{exact("https://a.example"), exact("https://b.example")}},
		},
		{
			name: "lists, whole seconds of maxAge, credentials false, IGNORE",
			in: &networking.CorsPolicy{
				AllowMethods:        []string{"GET"},
				AllowHeaders:        []string{"x-a"},
				ExposeHeaders:       []string{"x-b"},
				MaxAge:              durationpb.New(90*time.Second + 500*time.Millisecond),
				AllowCredentials:    wrapperspb.Bool(false),
				UnmatchedPreflights: networking.CorsPolicy_IGNORE,
			},
			want: &istioroute.CORSPolicy{
				AllowMethods: []string{"GET"}, AllowHeaders: []string{"x-a"}, ExposeHeaders: []string{"x-b"},
				MaxAge: 90, AllowCredentials: new(bool), UnmatchedPreflights: "IGNORE",
			},
		},
		{
			name: "FORWARD is the runtime default",
			in:   &networking.CorsPolicy{UnmatchedPreflights: networking.CorsPolicy_FORWARD},
			want: &istioroute.CORSPolicy{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := corsOf(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %s\nwant %s", jsonOf(t, got), jsonOf(t, tc.want))
			}
		})
	}
}

// TestRouteModifiers checks modifiers end to end: the authority sources
// and their precedence, mirrors and what redirects and direct responses
// keep.
func TestRouteModifiers(t *testing.T) {
	const host = "svc.default.svc.cluster.local:80"
	for _, tc := range []struct {
		name    string
		http    string
		check   func(t *testing.T, r *istioroute.Route)
		warning string
	}{
		{
			name: "rewrite.authority wins over the destination's host header",
			http: `
  - route:
    - destination: {host: svc}
      headers: {request: {set: {host: dest.example}}}
    rewrite: {authority: route.example}`,
			check: func(t *testing.T, r *istioroute.Route) {
				if r.Rewrite == nil || r.Rewrite.Authority != "route.example" {
					t.Errorf("rewrite %s", jsonOf(t, r.Rewrite))
				}
			},
		},
		{
			name: "the only destination's host header is the authority",
			http: `
  - route:
    - destination: {host: svc}
      headers: {request: {add: {":authority": dest.example}}}`,
			check: func(t *testing.T, r *istioroute.Route) {
				if r.Rewrite == nil || r.Rewrite.Authority != "dest.example" || r.Route[0].Headers != nil {
					t.Errorf("rewrite %s, destination headers %s", jsonOf(t, r.Rewrite), jsonOf(t, r.Route[0].Headers))
				}
			},
		},
		{
			name: "mirror percentages: mirrorPercentage, 0 mirrors nothing",
			http: `
  - route: [{destination: {host: svc}}]
    mirror: {host: svc}
    mirrorPercentage: {value: 0}`,
			check: func(t *testing.T, r *istioroute.Route) {
				if len(r.Mirrors) != 0 {
					t.Errorf("mirrors %s", jsonOf(t, r.Mirrors))
				}
			},
		},
		{
			name: "mirror resolves like a destination (subset, listener port)",
			http: `
  - route: [{destination: {host: svc}}]
    mirror: {host: other.example.com, subset: v2}
    mirrorPercentage: {value: 33.3}`,
			check: func(t *testing.T, r *istioroute.Route) {
				want := []*istioroute.Mirror{{Cluster: "outbound|80|v2|other.example.com", Percentage: 33.3}}
				if !reflect.DeepEqual(r.Mirrors, want) {
					t.Errorf("mirrors %s", jsonOf(t, r.Mirrors))
				}
			},
			warning: "spec.http[0].mirror.host: destination host other.example.com is not a known service",
		},
		{
			name: "a redirect keeps headers, fault and CORS but no retries",
			http: `
  - redirect: {uri: /x}
    headers: {response: {set: {x-a: "1"}}}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    retries: {attempts: 3}`,
			check: func(t *testing.T, r *istioroute.Route) {
				if r.Headers == nil || r.CORS == nil || r.Retries != nil {
					t.Errorf("got %s", jsonOf(t, r))
				}
			},
			warning: "spec.http[0].retries: ignored: the route answers itself",
		},
		{
			name: "timeout",
			http: `
  - route: [{destination: {host: svc}}]
    timeout: 250ms`,
			check: func(t *testing.T, r *istioroute.Route) {
				if time.Duration(r.Timeout) != 250*time.Millisecond {
					t.Errorf("timeout %v", time.Duration(r.Timeout))
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, warnings := adaptInline(t, meshVS(`[{name: http, port: 80}]`, tc.http))
			vh := a.vhost("mesh", host)
			if vh == nil || len(vh.Routes) != 1 {
				t.Fatalf("want one route, got %v", vhostSummary(a.servers["mesh"]))
			}
			tc.check(t, vh.Routes[0])
			if tc.warning != "" && !hasWarning(warnings, tc.warning) {
				t.Errorf("missing warning %q in:\n%s", tc.warning, strings.Join(warnings, "\n"))
			}
		})
	}
}
