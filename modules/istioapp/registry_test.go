package istioapp

import (
	"slices"
	"testing"
)

func TestRegistryClusterDials(t *testing.T) {
	services := []*Service{
		{Hostname: "reviews.default.svc.cluster.local", Namespace: "default", Resolution: "STATIC",
			Ports:     []*ServicePort{{Number: 9080, Name: "http", TargetPort: 9090}},
			Selector:  map[string]string{"app": "reviews"},
			Endpoints: []*Workload{{Address: "unix:///run/reviews.sock", Labels: map[string]string{"version": "v1"}}}},
		{Hostname: "api.example.com", Resolution: "DNS", Ports: []*ServicePort{{Number: 443, Name: "tls"}}},
		{Hostname: "*.example.org", Resolution: "NONE", Ports: []*ServicePort{{Number: 443, Name: "tls", TargetPort: 8443}}},
	}
	workloads := []*Workload{
		{Name: "r1", Namespace: "default", Address: "10.0.0.1", Labels: map[string]string{"app": "reviews", "version": "v1"}},
		{Name: "r2", Namespace: "default", Address: "10.0.0.2", Ports: map[string]uint32{"http": 7000}, Labels: map[string]string{"app": "reviews", "version": "v2"}},
		{Name: "other-ns", Namespace: "zoo", Address: "10.0.0.3", Labels: map[string]string{"app": "reviews"}},
		{Name: "gateway-reached", Namespace: "default", Labels: map[string]string{"app": "reviews", "version": "v2"}},
	}
	reg, err := NewRegistry(services, workloads)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		cluster     Cluster
		dials       []string
		forwardPort string
	}{
		{"all endpoints, target and named ports", Cluster{Service: "reviews.default.svc.cluster.local", Port: 9080},
			[]string{"unix//run/reviews.sock", "10.0.0.1:9090", "10.0.0.2:7000"}, ""},
		{"subset", Cluster{Service: "reviews.default.svc.cluster.local", Port: 9080, Labels: map[string]string{"version": "v2"}},
			[]string{"10.0.0.2:7000"}, ""},
		{"PASSTHROUGH", Cluster{Service: "reviews.default.svc.cluster.local", Port: 9080, OriginalDestination: true}, nil, "9090"},
		{"DNS without endpoints dials the hostname", Cluster{Service: "api.example.com", Port: 443}, []string{"api.example.com:443"}, ""},
		{"NONE without endpoints: the client's destination", Cluster{Service: "*.example.org", Port: 443}, nil, "8443"},
		{"unknown port", Cluster{Service: "api.example.com", Port: 80}, nil, ""},
		{"unknown service", Cluster{Service: "nope", Port: 80}, nil, ""},
	} {
		dials, forwardPort := reg.ClusterDials(&tc.cluster)
		if !slices.Equal(dials, tc.dials) || forwardPort != tc.forwardPort {
			t.Errorf("%s: dials %q, forward port %q; want %q, %q", tc.name, dials, forwardPort, tc.dials, tc.forwardPort)
		}
	}
	if _, err := NewRegistry([]*Service{{Hostname: "a"}, {Hostname: "a"}}, nil); err == nil {
		t.Error("a service defined twice: want the app's error")
	}
}
