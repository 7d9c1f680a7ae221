package istioroute

import (
	"strings"
	"testing"
)

func TestHostLookupPrecedence(t *testing.T) {
	vhosts := map[string][]string{
		"exact-port":    {"reviews:9080"},
		"exact":         {"reviews", "Reviews.default.svc.cluster.local"},
		"wildcard":      {"*.example.com"},
		"wildcard-long": {"*.b.example.com"},
		"wildcard-port": {"*.port.test:8080"},
		"wildcard-dash": {"*-api.example.org"},
		"ipv6":          {"[::1]:8080"},
		"catch-all":     {"*"},
	}
	var table hostTable
	owners := map[string]string{}
	for name, domains := range vhosts {
		vh := &virtualHost{name: name}
		for _, d := range domains {
			if err := table.add(d, vh, owners); err != nil {
				t.Fatal(err)
			}
		}
	}
	table.sortWildcards()

	for _, tc := range []struct{ host, want string }{
		{"reviews:9080", "exact-port"},
		{"reviews", "exact"},
		{"reviews:1234", "exact"}, // exact name without port
		{"REVIEWS:9080", "exact-port"},
		{"reviews.default.svc.cluster.local", "exact"},
		{"reviews.default.svc.cluster.local:9080", "exact"},
		{"a.example.com", "wildcard"},
		{"a.example.com:443", "wildcard"},
		{"a.b.c.example.com", "wildcard"},
		{"x.b.example.com", "wildcard-long"},
		{"b.example.com", "wildcard"}, // *.b.example.com needs a label before .b
		{"example.com", "catch-all"},  // *.example.com does not match example.com
		{"x.port.test:8080", "wildcard-port"},
		{"x.port.test:9090", "catch-all"},
		{"x.port.test", "catch-all"},
		{"v1-api.example.org", "wildcard-dash"},
		{"-api.example.org", "catch-all"},
		{"[::1]:8080", "ipv6"},
		{"[::1]:9090", "catch-all"},
		{"", "catch-all"},
	} {
		vh := table.lookup(tc.host)
		if vh == nil || vh.name != tc.want {
			got := "<nil>"
			if vh != nil {
				got = vh.name
			}
			t.Errorf("lookup(%q) = %s, want %s", tc.host, got, tc.want)
		}
	}

	// Without "*", an unknown host has no virtual host.
	var noCatchAll hostTable
	if err := noCatchAll.add("reviews", &virtualHost{name: "r"}, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if vh := noCatchAll.lookup("ratings"); vh != nil {
		t.Errorf("lookup(ratings) = %s, want nil", vh.name)
	}
}

func TestHostTableErrors(t *testing.T) {
	for _, tc := range []struct {
		domains []string
		want    string
	}{
		{[]string{"reviews", "REVIEWS"}, "already served"},
		{[]string{"*", "*"}, "already served"},
		{[]string{""}, "empty domain"},
		{[]string{"foo.*"}, "only as the first character"},
		{[]string{"*.*.example.com"}, "only as the first character"},
	} {
		var table hostTable
		owners := map[string]string{}
		var err error
		for i, d := range tc.domains {
			if err = table.add(d, &virtualHost{name: strings.Repeat("v", i+1)}, owners); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error = %v, want %q", tc.domains, err, tc.want)
		}
	}
}

func TestSplitPort(t *testing.T) {
	for _, tc := range []struct {
		in, host string
		hasPort  bool
	}{
		{"example.com", "example.com", false},
		{"example.com:80", "example.com", true},
		{"[::1]", "[::1]", false},
		{"[::1]:80", "[::1]", true},
		{"::1", "::1", false},
		{"", "", false},
	} {
		host, hasPort := splitPort(tc.in)
		if host != tc.host || hasPort != tc.hasPort {
			t.Errorf("splitPort(%q) = %q, %v; want %q, %v", tc.in, host, hasPort, tc.host, tc.hasPort)
		}
	}
}
