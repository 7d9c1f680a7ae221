package istioroute

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

func TestHandlerSnapshot(t *testing.T) {
	v1 := newBackend(t, "v1")
	host := "reviews.default.svc.cluster.local"
	app := &istioapp.App{
		Services: []*istioapp.Service{{Hostname: host, Ports: []*istioapp.ServicePort{{Number: 9080, Name: "http"}}, Resolution: "STATIC",
			Endpoints: []*istioapp.Workload{v1.endpoint(map[string]string{"version": "v1"})}}},
		Clusters: []*istioapp.Cluster{{Name: cluster(9080, "v1", host), Service: host, Port: 9080, Subset: "v1", Labels: map[string]string{"version": "v1"}}},
	}
	ctx := newContext(t, app)
	h := provisionHandler(t, ctx, &VirtualHost{
		Name:    host + ":9080",
		Domains: []string{"reviews", "reviews:9080"},
		Routes: []*Route{
			{
				Name: "jason", VirtualService: "default/reviews",
				Match: []*Match{
					{Headers: map[string]*StringMatch{"end-user": exact("jason"), "x-test": {}}, URI: prefix("/api")},
					{Method: exact("POST")},
				},
				Route:   []*Destination{{Cluster: cluster(9080, "v1", host)}},
				Timeout: caddy.Duration(1500_000_000),
				Retries: &RetryPolicy{Attempts: 3},
			},
			{
				Name: "split", VirtualService: "default/reviews",
				Route: []*Destination{
					{Cluster: cluster(9080, "v1", host), Weight: 90},
					{Cluster: cluster(9080, "v3", host), Weight: 10},
					{Cluster: cluster(9080, "v4", host), Weight: 0},
				},
				Fault:   &istiofault.Fault{Abort: &istiofault.Abort{HTTPStatus: 500, Percentage: 50}},
				Mirrors: []*Mirror{{Cluster: cluster(9080, "v1", host), Percentage: 25}},
			},
			{Name: "moved", Match: []*Match{{URI: exact("/old")}}, Redirect: &Redirect{URI: "/new", Authority: "example.com"}},
			{Name: "teapot", DirectResponse: &DirectResponse{Status: 418}},
		},
	})

	snap := h.Snapshot()
	if snap.PathNormalization != "BASE" || len(snap.VirtualHosts) != 1 {
		t.Fatalf("snapshot: %+v", snap)
	}
	vh := snap.VirtualHosts[0]
	if vh.Name != host+":9080" || !slices.Equal(vh.Domains, []string{"reviews", "reviews:9080"}) || len(vh.Routes) != 4 {
		t.Fatalf("virtual host: %+v", vh)
	}
	jason, split, moved, teapot := vh.Routes[0], vh.Routes[1], vh.Routes[2], vh.Routes[3]

	wantMatch := []string{`uri prefix "/api" && headers[end-user] exact "jason" && headers[x-test] present`, `method exact "POST"`}
	if !slices.Equal(jason.Match, wantMatch) {
		t.Errorf("jason match:\n got %q\nwant %q", jason.Match, wantMatch)
	}
	if jason.Action != "route" || len(jason.Destinations) != 1 || jason.Destinations[0].Percent != 100 || !jason.Destinations[0].Found {
		t.Errorf("jason destinations: %+v", jason.Destinations)
	}
	if !slices.Equal(jason.Features, []string{"timeout=1.5s", "retries=3"}) {
		t.Errorf("jason features: %q", jason.Features)
	}

	wantSplit := []DestinationSnapshot{
		{Cluster: cluster(9080, "v1", host), Weight: 90, Percent: 90, Found: true},
		{Cluster: cluster(9080, "v3", host), Weight: 10, Percent: 10, Found: false},
		{Cluster: cluster(9080, "v4", host), Weight: 0, Percent: 0, Found: true},
	}
	if !slices.Equal(split.Destinations, wantSplit) {
		t.Errorf("split destinations:\n got %+v\nwant %+v", split.Destinations, wantSplit)
	}
	if len(split.Match) != 0 {
		t.Errorf("split match: %q, want none", split.Match)
	}
	if want := []string{"fault=abort 500 50%", "mirror=" + cluster(9080, "v1", host) + " 25%"}; !slices.Equal(split.Features, want) {
		t.Errorf("split features: %q, want %q", split.Features, want)
	}
	if moved.Action != "redirect" || moved.Redirect != "301 authority=example.com uri=/new" {
		t.Errorf("redirect: %+v", moved)
	}
	if teapot.Action != "direct_response" || teapot.DirectResponse != 418 || len(teapot.Match) != 0 {
		t.Errorf("direct response: %+v", teapot)
	}

	// the snapshot is plain JSON
	out, err := json.Marshal(snap)
	if err != nil || !strings.Contains(string(out), `"percent":90`) {
		t.Errorf("json: %s, %v", out, err)
	}
}

func TestHandlersWalksServers(t *testing.T) {
	ctx := newContext(t, nil)
	direct := provisionHandler(t, ctx, &VirtualHost{Name: "a", Domains: []string{"a"}, Routes: []*Route{{DirectResponse: &DirectResponse{Status: 200}}}})
	nested := provisionHandler(t, ctx, &VirtualHost{Name: "b", Domains: []string{"b"}, Routes: []*Route{{DirectResponse: &DirectResponse{Status: 204}}}})
	app := &caddyhttp.App{Servers: map[string]*caddyhttp.Server{
		"zeta": {Listen: []string{":9080"}, Routes: caddyhttp.RouteList{
			{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{
				{Handlers: []caddyhttp.MiddlewareHandler{nested}},
			}}}},
		}},
		"alpha": {Listen: []string{":8080"}, Routes: caddyhttp.RouteList{
			{Handlers: []caddyhttp.MiddlewareHandler{direct}},
		}},
		"none": {Listen: []string{":7070"}},
	}}
	got := Handlers(app)
	if len(got) != 2 || got[0].Server != "alpha" || got[1].Server != "zeta" {
		t.Fatalf("servers: %+v", got)
	}
	if vh := got[1].Handlers[0].VirtualHosts[0]; vh.Name != "b" || got[1].Listen[0] != ":9080" {
		t.Errorf("nested handler: %+v", got[1])
	}
	if Handlers(nil) != nil {
		t.Error("nil app: want nil")
	}
}
