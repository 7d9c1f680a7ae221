package istio

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func exactMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
}

func prefixMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
}

func regexMatch(s string) *networking.StringMatch {
	return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
}

// TestStringMatchConflict follows Istio's stringMatchConflict cases.
func TestStringMatchConflict(t *testing.T) {
	for _, tc := range []struct {
		name       string
		root, leaf *networking.StringMatch
		conflict   bool
	}{
		{"root unset", nil, prefixMatch("/a"), false},
		{"leaf unset", prefixMatch("/a"), nil, false},
		{"prefix under prefix", prefixMatch("/a"), prefixMatch("/a/b"), false},
		{"prefix not under prefix", prefixMatch("/a/b"), prefixMatch("/a"), true},
		{"exact under prefix", prefixMatch("/a"), exactMatch("/a/b"), false},
		{"exact not under prefix", prefixMatch("/a"), exactMatch("/b"), true},
		{"same exact", exactMatch("/a"), exactMatch("/a"), false},
		{"other exact", exactMatch("/a"), exactMatch("/b"), true},
		{"prefix under exact", exactMatch("/a"), prefixMatch("/a"), true},
		{"regex root", regexMatch("/a.*"), prefixMatch("/a"), true},
		{"regex leaf", prefixMatch("/a"), regexMatch("/a.*"), true},
		{"two regexes", regexMatch("/a.*"), regexMatch("/a.*"), true},
		{"empty root matcher", &networking.StringMatch{}, prefixMatch("/a"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := stringMatchConflict(tc.root, tc.leaf); got != tc.conflict {
				t.Errorf("got %v, want %v", got, tc.conflict)
			}
		})
	}
}

// TestMergeMatches follows Istio's mergeHTTPMatchRequests: every
// delegate alternative must fit in a root alternative, and is merged with
// each one it fits in.
func TestMergeMatches(t *testing.T) {
	m := func(uri *networking.StringMatch, headers map[string]string) *networking.HTTPMatchRequest {
		out := &networking.HTTPMatchRequest{Uri: uri}
		for k, v := range headers {
			if out.Headers == nil {
				out.Headers = make(map[string]*networking.StringMatch)
			}
			out.Headers[k] = exactMatch(v)
		}
		return out
	}
	summary := func(ms []*networking.HTTPMatchRequest) []string {
		var out []string
		for _, x := range ms {
			s := x.GetUri().GetPrefix() + x.GetUri().GetExact()
			for _, k := range slices.Sorted(maps.Keys(x.GetHeaders())) {
				s += " " + k + "=" + x.GetHeaders()[k].GetExact()
			}
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		root, leaf []*networking.HTTPMatchRequest
		want       []string
		conflict   bool
	}{
		{"no root match: the delegate's", nil, []*networking.HTTPMatchRequest{m(prefixMatch("/a"), nil)}, []string{"/a"}, false},
		{"no delegate match: the root's", []*networking.HTTPMatchRequest{m(prefixMatch("/a"), nil)}, nil, []string{"/a"}, false},
		{
			"inherits and merges headers",
			[]*networking.HTTPMatchRequest{m(prefixMatch("/a"), map[string]string{"x": "1"})},
			[]*networking.HTTPMatchRequest{m(nil, map[string]string{"y": "2"})},
			[]string{"/a x=1 y=2"},
			false,
		},
		{
			"merged with every root alternative it fits",
			[]*networking.HTTPMatchRequest{m(prefixMatch("/a"), nil), m(prefixMatch("/a/b"), nil), m(prefixMatch("/c"), nil)},
			[]*networking.HTTPMatchRequest{m(exactMatch("/a/b/c"), nil)},
			[]string{"/a/b/c", "/a/b/c"},
			false,
		},
		{
			"header value conflicts",
			[]*networking.HTTPMatchRequest{m(nil, map[string]string{"x": "1"})},
			[]*networking.HTTPMatchRequest{m(nil, map[string]string{"x": "2"})},
			nil,
			true,
		},
		{
			"one delegate alternative outside the root conflicts the route",
			[]*networking.HTTPMatchRequest{m(prefixMatch("/a"), nil)},
			[]*networking.HTTPMatchRequest{m(prefixMatch("/a/x"), nil), m(prefixMatch("/b"), nil)},
			nil,
			true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, refs, conflict := mergeMatches(tc.root, tc.leaf, make([]fieldRef, len(tc.root)), make([]fieldRef, len(tc.leaf)))
			if conflict != tc.conflict || !reflect.DeepEqual(summary(got), tc.want) || len(refs) != len(got) {
				t.Errorf("got %q (conflict %v, %d refs), want %q (conflict %v)", summary(got), conflict, len(refs), tc.want, tc.conflict)
			}
		})
	}
}

// TestAlternativeApplies checks the configuration-time selectors against
// the proxy identities of a listener.
func TestAlternativeApplies(t *testing.T) {
	sidecar := proxyIdentity{gateway: meshGateway, labels: map[string]string{"app": "a", "version": "v1"}, namespace: "shop"}
	gw := proxyIdentity{gateway: "ingress/edge", labels: map[string]string{"istio": "ingressgateway"}, namespace: "ingress"}
	for _, tc := range []struct {
		name    string
		match   *networking.HTTPMatchRequest
		proxies []proxyIdentity
		want    bool
	}{
		{"no selector", &networking.HTTPMatchRequest{}, []proxyIdentity{sidecar}, true},
		{"labels subset", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}}, []proxyIdentity{sidecar}, true},
		{"labels not a subset", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "b"}}, []proxyIdentity{sidecar}, false},
		{"namespace equal", &networking.HTTPMatchRequest{SourceNamespace: "shop"}, []proxyIdentity{sidecar}, true},
		{"namespace other", &networking.HTTPMatchRequest{SourceNamespace: "default"}, []proxyIdentity{sidecar}, false},
		{"labels and namespace of one proxy", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"istio": "ingressgateway"}, SourceNamespace: "ingress"}, []proxyIdentity{sidecar, gw}, true},
		{"labels of one proxy, namespace of another", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"istio": "ingressgateway"}, SourceNamespace: "shop"}, []proxyIdentity{sidecar, gw}, false},
		{"gateways replace the source selectors", &networking.HTTPMatchRequest{Gateways: []string{"ingress/edge"}, SourceNamespace: "nowhere"}, []proxyIdentity{gw}, true},
		{"gateways of another proxy", &networking.HTTPMatchRequest{Gateways: []string{"mesh"}}, []proxyIdentity{gw}, false},
		{"port of another listener", &networking.HTTPMatchRequest{Port: 81}, []proxyIdentity{sidecar}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := alternativeApplies(tc.match, routeScope{port: 80, proxies: tc.proxies}); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDelegate checks a root route merged with its delegate end to end.
func TestDelegate(t *testing.T) {
	a, warnings := adaptInline(t, meshVS(`[{name: http, port: 80}]`, `
  - name: root
    match: [{uri: {prefix: /api}}]
    delegate: {name: child, namespace: team}
    timeout: 3s
  - route: [{destination: {host: svc}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child, namespace: team}
spec:
  http:
  - name: v1
    match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: v1}}]
  - name: outside
    match: [{uri: {prefix: /other}}]
    route: [{destination: {host: v1}}]
  - name: rest
    route: [{destination: {host: rest.example.com}}]
    timeout: 1s`))
	vh := a.vhost("mesh", "svc.default.svc.cluster.local:80")
	if vh == nil {
		t.Fatalf("no virtual host: %v", vhostSummary(a.servers["mesh"]))
	}
	want := []string{
		"prefix /api/v1 -> outbound|80||v1.team.svc.cluster.local",
		"prefix /api -> outbound|80||rest.example.com",
		"* -> outbound|80||svc.default.svc.cluster.local",
	}
	if got := routeSummary(vh.Routes); !reflect.DeepEqual(got, want) {
		t.Fatalf("routes:\n got %q\nwant %q", got, want)
	}
	if vh.Routes[0].Name != "root-v1" || vh.Routes[1].Name != "root-rest" {
		t.Errorf("names %q, %q", vh.Routes[0].Name, vh.Routes[1].Name)
	}
	if vh.Routes[0].Timeout != 3e9 || vh.Routes[1].Timeout != 1e9 {
		t.Errorf("timeouts %v, %v: want the root's inherited, the delegate's kept", vh.Routes[0].Timeout, vh.Routes[1].Timeout)
	}
	if !hasWarning(warnings, "spec.http[1].match: not within the match of the delegating route spec.http[0]") {
		t.Errorf("missing conflict warning in:\n%s", strings.Join(warnings, "\n"))
	}
	for _, s := range a.servers {
		for _, vh := range s.vhosts {
			if strings.Contains(vh.Name, "child") {
				t.Errorf("the delegate has a virtual host: %s", vh.Name)
			}
		}
	}
}
