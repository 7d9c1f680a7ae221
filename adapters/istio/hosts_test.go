package istio

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

func TestExpandHost(t *testing.T) {
	for _, tc := range []struct{ host, ns, want string }{
		{"reviews", "foo", "reviews.foo.svc.cluster.local"},
		{"reviews.default", "foo", "reviews.default"},
		{"reviews.default.svc.cluster.local", "foo", "reviews.default.svc.cluster.local"},
		{"api.example.com", "foo", "api.example.com"},
		{"*.example.com", "foo", "*.example.com"},
		{"*", "foo", "*"},
		{"10.0.0.1", "foo", "10.0.0.1"},
		{"", "foo", ""},
	} {
		if got := expandHost(tc.host, tc.ns); got != tc.want {
			t.Errorf("expandHost(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
		}
	}
}

func TestKubeShortForms(t *testing.T) {
	for _, tc := range []struct {
		host string
		want []string
	}{
		{"reviews.default.svc.cluster.local", []string{"reviews", "reviews.default", "reviews.default.svc"}},
		{"api.example.com", nil},
		{"a.b.c.svc.cluster.local", nil},
		{"*.default.svc.cluster.local", nil},
	} {
		if got := kubeShortForms(tc.host); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("kubeShortForms(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestIntersectHosts(t *testing.T) {
	for _, tc := range []struct {
		a, b, want string
		ok         bool
	}{
		{"*", "dev.example.com", "dev.example.com", true},
		{"*", "*", "*", true},
		{"*.example.com", "dev.example.com", "dev.example.com", true},
		{"*.example.com", "a.b.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", "", false},
		{"*.example.com", "*", "*.example.com", true},
		{"*.example.com", "*.dev.example.com", "*.dev.example.com", true},
		{"*.example.com", "*.example.org", "", false},
		{"Dev.Example.com", "dev.example.com", "dev.example.com", true},
		{"a.com", "b.com", "", false},
	} {
		got, ok := intersectHosts(tc.a, tc.b)
		if got != tc.want || ok != tc.ok {
			t.Errorf("intersectHosts(%q, %q) = %q, %v; want %q, %v", tc.a, tc.b, got, ok, tc.want, tc.ok)
		}
		got, ok = intersectHosts(tc.b, tc.a)
		if ok != tc.ok || (ok && !strings.EqualFold(got, tc.want)) {
			t.Errorf("intersectHosts(%q, %q) = %q, %v; want %q, %v", tc.b, tc.a, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMostSpecific(t *testing.T) {
	patterns := []string{"*", "*.example.com", "*.api.example.com", "v1.api.example.com"}
	for _, tc := range []struct {
		host string
		want int
	}{
		{"v1.api.example.com", 3},
		{"v2.api.example.com", 2},
		{"www.example.com", 1},
		{"example.org", 0},
	} {
		if got := mostSpecific(tc.host, patterns); got != tc.want {
			t.Errorf("mostSpecific(%q) = %d, want %d", tc.host, got, tc.want)
		}
	}
	if got := mostSpecific("example.org", []string{"*.example.com"}); got != -1 {
		t.Errorf("mostSpecific without match = %d, want -1", got)
	}
}

func TestResolveGatewayRef(t *testing.T) {
	for _, tc := range []struct{ ref, ns, want string }{
		{"mesh", "foo", "mesh"},
		{"gw", "foo", "foo/gw"},
		{"bar/gw", "foo", "bar/gw"},
		{"./gw", "foo", "foo/gw"},
		{"gw.bar", "foo", "bar/gw"},
		{"gw.bar.svc.cluster.local", "foo", "bar/gw"},
	} {
		if got := resolveGatewayRef(tc.ref, tc.ns); got != tc.want {
			t.Errorf("resolveGatewayRef(%q, %q) = %q, want %q", tc.ref, tc.ns, got, tc.want)
		}
	}
}

func TestListenAddress(t *testing.T) {
	for _, tc := range []struct {
		bind string
		port uint32
		want string
	}{
		{"", 80, ":80"},
		{"10.0.0.1", 8080, "tcp/10.0.0.1:8080"},
		{"::1", 8080, "tcp/[::1]:8080"},
		{"unix:///run/gw.sock", 0, "unix//run/gw.sock"},
	} {
		if got := listenAddress(tc.bind, tc.port); got != tc.want {
			t.Errorf("listenAddress(%q, %d) = %q, want %q", tc.bind, tc.port, got, tc.want)
		}
	}
}

func TestKubePortProtocol(t *testing.T) {
	for _, tc := range []struct {
		port istioyaml.KubeServicePort
		want string
	}{
		{istioyaml.KubeServicePort{Name: "http", Port: 9080}, "HTTP"},
		{istioyaml.KubeServicePort{Name: "http-web", Port: 80}, "HTTP"},
		{istioyaml.KubeServicePort{Name: "HTTP2", Port: 80}, "HTTP2"},
		{istioyaml.KubeServicePort{Name: "grpc", Port: 80}, "GRPC"},
		{istioyaml.KubeServicePort{Name: "grpc-web", Port: 80}, "GRPC-WEB"},
		{istioyaml.KubeServicePort{Name: "grpc-web-x", Port: 80}, "GRPC-WEB"},
		{istioyaml.KubeServicePort{Name: "https", Port: 443}, "HTTPS"},
		{istioyaml.KubeServicePort{Name: "tls-x", Port: 443}, "TLS"},
		{istioyaml.KubeServicePort{Name: "tcp", Port: 31400}, "TCP"},
		{istioyaml.KubeServicePort{Name: "mongo", Port: 1}, "MONGO"},
		{istioyaml.KubeServicePort{Name: "redis", Port: 1}, "REDIS"},
		{istioyaml.KubeServicePort{Name: "mysql", Port: 1}, "MYSQL"},
		{istioyaml.KubeServicePort{Name: "web", Port: 8080}, ""},
		{istioyaml.KubeServicePort{Port: 8080}, ""},
		{istioyaml.KubeServicePort{Port: 3306}, "TCP"},
		{istioyaml.KubeServicePort{Name: "dns", Port: 53, Protocol: "UDP"}, "UDP"},
		{istioyaml.KubeServicePort{Name: "web", Port: 80, AppProtocol: "http"}, "HTTP"},
		{istioyaml.KubeServicePort{Name: "http", Port: 80, AppProtocol: "kubernetes.io/h2c"}, "HTTP2"},
		{istioyaml.KubeServicePort{Name: "tcp", Port: 80, AppProtocol: "kubernetes.io/ws"}, "HTTP"},
	} {
		if got := kubePortProtocol(tc.port); got != tc.want {
			t.Errorf("kubePortProtocol(%+v) = %q, want %q", tc.port, got, tc.want)
		}
	}
}
