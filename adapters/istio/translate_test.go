package istio

import (
	"encoding/json"
	"testing"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
)

// TestTranslate uses the exported API the way a Caddyfile directive or a
// Kubernetes watcher would: decoded objects in, a Caddy config out.
func TestTranslate(t *testing.T) {
	objs, _, errs := istioyaml.Decode("mesh.yaml", []byte(`
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 8000}]
`), istioyaml.Options{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cfg, warnings := Translate(objs, Options{MeshListen: "127.0.0.9:15001"})
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if cfg.Admin != nil {
		t.Errorf("the config sets admin: %+v", cfg.Admin)
	}
	var http struct {
		Servers map[string]struct {
			Listen []string `json:"listen"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(cfg.AppsRaw["http"], &http); err != nil {
		t.Fatal(err)
	}
	if got := http.Servers["mesh"].Listen; len(got) != 1 || got[0] != "tcp/127.0.0.9:15001" {
		t.Errorf("mesh listener = %q", got)
	}
	var app appConfig
	if err := json.Unmarshal(cfg.AppsRaw["istio"], &app); err != nil {
		t.Fatal(err)
	}
	if len(app.Services) != 1 || app.Services[0].Hostname != "web.shop.svc.cluster.local" || len(app.Clusters) != 1 {
		t.Errorf("istio app = %+v", app)
	}

	empty, warnings := Translate(nil, Options{})
	if _, ok := empty.AppsRaw["http"]; ok || len(warnings) > 0 {
		t.Errorf("empty input: apps %v, warnings %v", empty.AppsRaw, warnings)
	}
}

// TestAdaptErrors checks that invalid input gives one error with every
// problem, one per line, in document order.
func TestAdaptErrors(t *testing.T) {
	_, _, err := Adapter{}.Adapt([]byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ok, namespace: default}
spec:
  hosts: [ok]
  http:
  - route: [{destination: {host: ok}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: -10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bad, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: STRICT}
`), map[string]any{"filename": "mesh.yaml"})
	if err == nil {
		t.Fatal("no error")
	}
	want := "mesh.yaml: document 2 (VirtualService default/reviews): spec.http[0].route[0].weight: weight -10 < 0\n" +
		"mesh.yaml: document 3 (DestinationRule default/bad): spec.trafficPolicy.tls.mode: "
	if got := err.Error(); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("error:\n%s\nwant it to start with:\n%s", got, want)
	}
}
