package istioroute

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// matchRequest is a request for a match test case.
type matchRequest struct {
	method string
	target string // request target; host from it or from Host
	host   string
	tls    bool
	header http.Header
}

func (mr matchRequest) build() *http.Request {
	method := mr.method
	if method == "" {
		method = http.MethodGet
	}
	req := httptest.NewRequest(method, mr.target, nil)
	if mr.host != "" {
		req.Host = mr.host
	}
	if mr.tls {
		req.TLS = &tls.ConnectionState{}
	} else {
		req.TLS = nil
	}
	for k, vs := range mr.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req
}

func TestMatchKinds(t *testing.T) {
	get := func(target string) matchRequest { return matchRequest{target: target} }
	withHeader := func(target string, kv ...string) matchRequest {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return matchRequest{target: target, header: h}
	}

	for _, tc := range []struct {
		name  string
		match Match
		yes   []matchRequest
		no    []matchRequest
	}{
		{
			name:  "uri exact ignores the query",
			match: Match{URI: exact("/a")},
			yes:   []matchRequest{get("/a"), get("/a?x=1")},
			no:    []matchRequest{get("/a/"), get("/A"), get("/ab")},
		},
		{
			name:  "uri prefix is a raw string prefix",
			match: Match{URI: prefix("/api")},
			yes:   []matchRequest{get("/api"), get("/apix"), get("/api/v1?q=1")},
			no:    []matchRequest{get("/ap"), get("/API"), get("/x/api")},
		},
		{
			name:  "uri empty prefix matches every path",
			match: Match{URI: prefix("")},
			yes:   []matchRequest{get("/"), get("/anything")},
		},
		{
			name:  "uri regex matches the whole path",
			match: Match{URI: regex("/v[0-9]+")},
			yes:   []matchRequest{get("/v1"), get("/v12?x=/v1/y")},
			no:    []matchRequest{get("/v12/x"), get("/x/v1"), get("/V1")},
		},
		{
			name:  "uri regex alternation is anchored as a whole",
			match: Match{URI: regex("/a|/b")},
			yes:   []matchRequest{get("/a"), get("/b")},
			no:    []matchRequest{get("/ab"), get("/a/b")},
		},
		{
			name:  "uri matches the path as sent, escaped",
			match: Match{URI: exact("/a%20b")},
			yes:   []matchRequest{get("/a%20b")},
			no:    []matchRequest{get("/a+b")},
		},
		{
			name:  "ignore_uri_case exact",
			match: Match{URI: exact("/Login"), IgnoreURICase: true},
			yes:   []matchRequest{get("/login"), get("/LOGIN")},
			no:    []matchRequest{get("/login/")},
		},
		{
			name:  "ignore_uri_case prefix",
			match: Match{URI: prefix("/API"), IgnoreURICase: true},
			yes:   []matchRequest{get("/api/x"), get("/Api")},
			no:    []matchRequest{get("/ap")},
		},
		{
			name:  "ignore_uri_case does not apply to regex",
			match: Match{URI: regex("/api"), IgnoreURICase: true},
			yes:   []matchRequest{get("/api")},
			no:    []matchRequest{get("/API")},
		},
		{
			name:  "uri {} matches anything",
			match: Match{URI: &StringMatch{}},
			yes:   []matchRequest{get("/"), get("/x")},
		},
		{
			name:  "scheme",
			match: Match{Scheme: exact("https")},
			yes:   []matchRequest{{target: "/", tls: true}},
			no:    []matchRequest{{target: "/"}},
		},
		{
			name:  "method",
			match: Match{Method: exact("POST")},
			yes:   []matchRequest{{method: "POST", target: "/"}},
			no:    []matchRequest{{method: "GET", target: "/"}, {method: "post", target: "/"}},
		},
		{
			name:  "method regex",
			match: Match{Method: regex("GET|HEAD")},
			yes:   []matchRequest{{method: "HEAD", target: "/"}},
			no:    []matchRequest{{method: "POST", target: "/"}},
		},
		{
			name:  "authority includes the port as sent",
			match: Match{Authority: exact("example.com:8080")},
			yes:   []matchRequest{{target: "/", host: "example.com:8080"}},
			no:    []matchRequest{{target: "/", host: "example.com"}, {target: "/", host: "Example.com:8080"}},
		},
		{
			name:  "authority prefix",
			match: Match{Authority: prefix("example.com")},
			yes:   []matchRequest{{target: "/", host: "example.com"}, {target: "/", host: "example.com:8080"}},
			no:    []matchRequest{{target: "/", host: "www.example.com"}},
		},
		{
			name:  "header exact is case-sensitive in value",
			match: Match{Headers: map[string]*StringMatch{"end-user": exact("jason")}},
			yes:   []matchRequest{withHeader("/", "End-User", "jason")},
			no:    []matchRequest{withHeader("/", "End-User", "Jason"), get("/"), withHeader("/", "End-User", "jason2")},
		},
		{
			name:  "header prefix",
			match: Match{Headers: map[string]*StringMatch{"user-agent": prefix("Mozilla")}},
			yes:   []matchRequest{withHeader("/", "User-Agent", "Mozilla/5.0")},
			no:    []matchRequest{withHeader("/", "User-Agent", "curl/8"), get("/")},
		},
		{
			name:  "header regex is whole-value",
			match: Match{Headers: map[string]*StringMatch{"x-version": regex("v[12]")}},
			yes:   []matchRequest{withHeader("/", "X-Version", "v1")},
			no:    []matchRequest{withHeader("/", "X-Version", "v12"), get("/")},
		},
		{
			name:  "header {} means present",
			match: Match{Headers: map[string]*StringMatch{"x-canary": {}}},
			yes:   []matchRequest{withHeader("/", "X-Canary", "1"), withHeader("/", "X-Canary", "")},
			no:    []matchRequest{get("/")},
		},
		{
			name:  "header null means present",
			match: Match{Headers: map[string]*StringMatch{"x-canary": nil}},
			yes:   []matchRequest{withHeader("/", "X-Canary", "1")},
			no:    []matchRequest{get("/")},
		},
		{
			name:  "header regex * means present",
			match: Match{Headers: map[string]*StringMatch{"x-canary": regex("*")}},
			yes:   []matchRequest{withHeader("/", "X-Canary", "anything")},
			no:    []matchRequest{get("/")},
		},
		{
			name:  "header exact empty needs the header present and empty",
			match: Match{Headers: map[string]*StringMatch{"x-empty": exact("")}},
			yes:   []matchRequest{withHeader("/", "X-Empty", "")},
			no:    []matchRequest{get("/"), withHeader("/", "X-Empty", "x")},
		},
		{
			name:  "header values are joined with a comma",
			match: Match{Headers: map[string]*StringMatch{"x-multi": exact("a,b")}},
			yes:   []matchRequest{withHeader("/", "X-Multi", "a", "X-Multi", "b")},
			no:    []matchRequest{withHeader("/", "X-Multi", "a")},
		},
		{
			name:  "header host reads the request host",
			match: Match{Headers: map[string]*StringMatch{"host": exact("example.com")}},
			yes:   []matchRequest{{target: "/", host: "example.com"}},
			no:    []matchRequest{{target: "/", host: "other.com"}},
		},
		{
			name:  "pseudo-header :method",
			match: Match{Headers: map[string]*StringMatch{":method": exact("PUT")}},
			yes:   []matchRequest{{method: "PUT", target: "/"}},
			no:    []matchRequest{{method: "GET", target: "/"}},
		},
		{
			name:  "all headers must match",
			match: Match{Headers: map[string]*StringMatch{"a": exact("1"), "b": exact("2")}},
			yes:   []matchRequest{withHeader("/", "A", "1", "B", "2")},
			no:    []matchRequest{withHeader("/", "A", "1"), withHeader("/", "A", "1", "B", "3")},
		},
		{
			name:  "without_headers value: missing counts as empty, then negated",
			match: Match{WithoutHeaders: map[string]*StringMatch{"x-user": exact("bot")}},
			yes:   []matchRequest{get("/"), withHeader("/", "X-User", "human")},
			no:    []matchRequest{withHeader("/", "X-User", "bot")},
		},
		{
			name:  "without_headers exact empty: a missing header is excluded",
			match: Match{WithoutHeaders: map[string]*StringMatch{"x-user": exact("")}},
			yes:   []matchRequest{withHeader("/", "X-User", "someone")},
			no:    []matchRequest{get("/"), withHeader("/", "X-User", "")},
		},
		{
			name:  "without_headers prefix",
			match: Match{WithoutHeaders: map[string]*StringMatch{"x-user": prefix("test-")}},
			yes:   []matchRequest{get("/"), withHeader("/", "X-User", "prod-1")},
			no:    []matchRequest{withHeader("/", "X-User", "test-1")},
		},
		{
			name:  "without_headers {} means absent",
			match: Match{WithoutHeaders: map[string]*StringMatch{"x-debug": {}}},
			yes:   []matchRequest{get("/")},
			no:    []matchRequest{withHeader("/", "X-Debug", ""), withHeader("/", "X-Debug", "1")},
		},
		{
			name:  "query exact uses the first value",
			match: Match{QueryParams: map[string]*StringMatch{"v": exact("1")}},
			yes:   []matchRequest{get("/?v=1"), get("/?a=2&v=1"), get("/?v=1&v=2")},
			no:    []matchRequest{get("/"), get("/?v=2"), get("/?v=2&v=1"), get("/?vv=1")},
		},
		{
			name:  "query {} means present",
			match: Match{QueryParams: map[string]*StringMatch{"debug": {}}},
			yes:   []matchRequest{get("/?debug"), get("/?debug="), get("/?debug=1")},
			no:    []matchRequest{get("/"), get("/?nodebug=1")},
		},
		{
			name:  "query exact empty matches ?k and ?k=",
			match: Match{QueryParams: map[string]*StringMatch{"k": exact("")}},
			yes:   []matchRequest{get("/?k"), get("/?k=")},
			no:    []matchRequest{get("/"), get("/?k=1")},
		},
		{
			name:  "query values are decoded",
			match: Match{QueryParams: map[string]*StringMatch{"name": exact("a b/c")}},
			yes:   []matchRequest{get("/?name=a%20b%2Fc"), get("/?name=a+b/c")},
			no:    []matchRequest{get("/?name=a_b/c")},
		},
		{
			name:  "query regex and prefix",
			match: Match{QueryParams: map[string]*StringMatch{"id": regex("[0-9]+"), "tag": prefix("x")}},
			yes:   []matchRequest{get("/?id=42&tag=xy")},
			no:    []matchRequest{get("/?id=42a&tag=xy"), get("/?id=42&tag=yx"), get("/?id=42")},
		},
		{
			name: "every condition must hold",
			match: Match{URI: prefix("/api"), Method: exact("GET"),
				Headers: map[string]*StringMatch{"x-a": exact("1")}, QueryParams: map[string]*StringMatch{"q": {}}},
			yes: []matchRequest{withHeader("/api/x?q", "X-A", "1")},
			no:  []matchRequest{withHeader("/api/x", "X-A", "1"), withHeader("/web?q", "X-A", "1"), get("/api/x?q")},
		},
		{
			name:  "empty match matches everything",
			match: Match{},
			yes:   []matchRequest{get("/"), {method: "DELETE", target: "/x?y"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := compileMatch(&tc.match)
			if err != nil {
				t.Fatal(err)
			}
			check := func(mr matchRequest, want bool) {
				req := mr.build()
				ri := newRequestInfo(req)
				if got := m.matches(&ri); got != want {
					t.Errorf("%s %s (host %q, header %v, tls %v): match = %v, want %v",
						req.Method, mr.target, req.Host, mr.header, mr.tls, got, want)
				}
			}
			for _, mr := range tc.yes {
				check(mr, true)
			}
			for _, mr := range tc.no {
				check(mr, false)
			}
		})
	}
}

func TestCompileMatchErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match Match
		want  string
	}{
		{"bad uri regex", Match{URI: regex("(")}, "uri: regex"},
		{"two kinds", Match{URI: &StringMatch{Exact: ptr("/a"), Prefix: ptr("/")}}, "only one of"},
		{"bad header regex", Match{Headers: map[string]*StringMatch{"x": regex("[")}}, `headers: "x": regex`},
		{"bad without_headers regex", Match{WithoutHeaders: map[string]*StringMatch{"x": regex("*a")}}, "without_headers"},
		{"bad query regex", Match{QueryParams: map[string]*StringMatch{"q": regex("(?<x>")}}, `query_params "q"`},
		{"uri regex * is not special", Match{URI: regex("*")}, "uri: regex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileMatch(&tc.match)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMatchedPrefixLen(t *testing.T) {
	compile := func(m Match) *match {
		cm, err := compileMatch(&m)
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	for _, tc := range []struct {
		name string
		m    *match
		path string
		want int
	}{
		{"no match alternative: /", nil, "/foo", 1},
		{"no uri: /", compile(Match{Method: exact("GET")}), "/foo", 1},
		{"prefix", compile(Match{URI: prefix("/v1")}), "/v1/items", 3},
		{"exact: whole path", compile(Match{URI: exact("/old")}), "/old", 4},
		{"regex: whole path", compile(Match{URI: regex("/o.*")}), "/old/x", 6},
	} {
		if got := tc.m.matchedPrefixLen(tc.path); got != tc.want {
			t.Errorf("%s: matchedPrefixLen(%q) = %d, want %d", tc.name, tc.path, got, tc.want)
		}
	}
}
