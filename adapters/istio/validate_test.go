package istio

import (
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"

	_ "github.com/caddy-istio/caddy-istio/modules/istioapp"
	_ "github.com/caddy-istio/caddy-istio/modules/istioroute"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// TestValidate loads the JSON produced for every golden case through
// caddy.Validate, which provisions every module (the istio app and its
// reverse_proxy clusters, the http servers and istio_route) without
// starting listeners: `caddy adapt --validate` for each input.
func TestValidate(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := Adapter{}.Adapt(c.input, map[string]any{"filename": c.name})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatalf("decoding the adapted config: %v", err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Errorf("caddy.Validate: %v", err)
			}
		})
	}
}
