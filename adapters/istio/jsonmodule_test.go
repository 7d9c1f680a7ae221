package istio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// TestJSONModuleObject checks jsonModuleObject against the
// caddyconfig.JSONModuleObject it replaces, byte for byte.
func TestJSONModuleObject(t *testing.T) {
	type inner struct {
		Z string  `json:"z"`
		A float64 `json:"a,omitempty"`
		M map[string]any
	}
	type outer struct {
		Zeta    int             `json:"zeta"`
		Alpha   []inner         `json:"alpha"`
		Handler string          `json:"handler,omitempty"`
		Raw     json.RawMessage `json:"raw,omitempty"`
		Big     uint64          `json:"big"`
		Neg     int64           `json:"neg"`
		Ptr     *inner          `json:"ptr"`
		Empty   struct{}        `json:"empty"`
		List    []any           `json:"list"`
	}
	cases := []struct {
		name string
		val  any
	}{
		{"empty struct", struct{}{}},
		{"empty map", map[string]any{}},
		{"sorted struct", struct {
			A string `json:"a"`
			B int    `json:"b"`
		}{"x", 1}},
		{"nested", outer{
			Zeta: 3,
			Alpha: []inner{
				{Z: "<b>&amp;</b>", A: 1e21, M: map[string]any{"b": 1, "a": []any{nil, true, false, 0.1}}},
				{Z: "caf\u00e9 \u2028 \u2029 \x01 \"q\" \\ /", A: 1e-7},
				{Z: "bad \xff utf-8", A: -0.5},
				{A: 123456789012345678},
			},
			Handler: "overridden",
			Raw:     json.RawMessage(` { "y" : [ 1 , 2.50, -0, 1E3, 12345678901234567 ], "x" : "\u00e9\u003c" , "w": {} } `),
			Big:     math.MaxUint64,
			Neg:     math.MinInt64,
			List:    []any{map[string]any{"k2": "v", "k1": map[string]string{"\u00e9": "é", "e": "\t"}}, []any{}, 1.5, "s"},
		}},
		{"map keys to escape", map[string]any{"<key>": 1, "a&b": 2, "\u2028": 3, "\xff": 4, "é": 5, "e": 6}},
		{"duplicate keys", struct {
			Raw json.RawMessage `json:"raw"`
		}{json.RawMessage(`{"a":1,"a":2}`)}},
		{"handler key present", map[string]any{"handler": "old", "z": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w1, w2 []caddyconfig.Warning
			want := caddyconfig.JSONModuleObject(c.val, "handler", "istio_route", &w1)
			got := jsonModuleObject(c.val, "handler", "istio_route", &w2)
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
			if len(w1) != len(w2) {
				t.Errorf("warnings %v, want %v", w2, w1)
			}
			// the rewrite itself, not its fallback
			enc, _ := json.Marshal(c.val)
			if _, ok := canonicalModuleObject(enc, "handler", "istio_route"); ok != (c.name != "duplicate keys") {
				t.Errorf("rewrite ok = %v", ok)
			}
		})
	}

	// Every golden config's handlers as they are encoded.
	var outputs []string
	filepath.WalkDir(filepath.Join("testdata", "golden"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".json" {
			outputs = append(outputs, path)
		}
		return nil
	})
	if len(outputs) == 0 {
		t.Fatal("no golden outputs")
	}
	for _, f := range outputs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if json.Unmarshal(data, &v) != nil {
			continue
		}
		if _, ok := v.(map[string]any); !ok {
			continue
		}
		want := caddyconfig.JSONModuleObject(json.RawMessage(data), "handler", "x", nil)
		got := jsonModuleObject(json.RawMessage(data), "handler", "x", nil)
		if _, ok := canonicalModuleObject(data, "handler", "x"); !ok {
			t.Errorf("%s: not rewritten", f)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: differs from caddyconfig.JSONModuleObject", f)
		}
	}
}

// FuzzJSONModuleObject compares jsonModuleObject with
// caddyconfig.JSONModuleObject on arbitrary JSON objects.
func FuzzJSONModuleObject(f *testing.F) {
	f.Add(`{"b":1,"a":[1.50,-0,1e400,"\u003c\ud800",{"y":null,"x":true}]}`)
	f.Add(`{"a":{"c":1,"b":2},"a":3}`)
	f.Add(`{"handler":"x","\u00e9":"\xff"}`)
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) || !strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "{") {
			return // JSONModuleObject wants an object
		}
		raw := json.RawMessage(s)
		want := caddyconfig.JSONModuleObject(raw, "handler", "h", nil)
		got := jsonModuleObject(raw, "handler", "h", nil)
		if !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

// TestMarshalConfig checks marshalConfig against json.Marshal on every
// golden case's config.
func TestMarshalConfig(t *testing.T) {
	configs := []*caddy.Config{{}, {AppsRaw: caddy.ModuleMap{}}, {AppsRaw: caddy.ModuleMap{"b": nil, "a": json.RawMessage(`{"x":1}`)}}}
	for _, c := range goldenCases(t) {
		objs, _, err := DecodeAndValidate(c.name, c.input, "")
		if err != nil {
			continue
		}
		cfg, _ := Translate(objs, Options{})
		configs = append(configs, cfg)
	}
	for i, cfg := range configs {
		want, _ := json.Marshal(cfg)
		got, err := marshalConfig(cfg)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("config %d: got %s (%v), want %s", i, got, err, want)
		}
	}
}

// TestIstioRouteJSON checks the istio_route handler encoded in parallel
// against jsonModuleObject on the whole handler.
func TestIstioRouteJSON(t *testing.T) {
	for _, n := range []int{0, 3, 1023, 1024, 4099} {
		var vhosts []*istioroute.VirtualHost
		for i := range n {
			if i%97 == 5 {
				vhosts = append(vhosts, nil)
				continue
			}
			vhosts = append(vhosts, &istioroute.VirtualHost{
				Name:    fmt.Sprintf("h%d.bench:80", i),
				Domains: []string{fmt.Sprintf("h%d.bench", i), "<&>\u00e9"},
				Routes: []*istioroute.Route{{
					Name:    "r",
					Timeout: caddy.Duration(1500 * time.Millisecond),
					Route: []*istioroute.Destination{
						{Cluster: "outbound|80||backend-v1.bench", Weight: 90},
						{Cluster: "outbound|80||backend-v2.bench", Weight: 10},
					},
				}},
			})
		}
		want := jsonModuleObject(routeHandler{VirtualHosts: vhosts}, "handler", "istio_route", nil)
		if got := istioRouteJSON(vhosts); !bytes.Equal(got, want) {
			t.Errorf("%d virtual hosts: got\n%.300s\nwant\n%.300s", n, got, want)
		}
	}
}

// TestHTTPAppJSON checks httpAppJSON against caddyconfig.JSON with large
// handlers, and that the servers are left as they were.
func TestHTTPAppJSON(t *testing.T) {
	var vhosts []*istioroute.VirtualHost
	for i := range 3000 {
		vhosts = append(vhosts, &istioroute.VirtualHost{Name: fmt.Sprintf("h%d", i), Domains: []string{fmt.Sprintf("h%d.bench", i)}})
	}
	servers := map[string]*caddyhttp.Server{
		"b": newServer("127.0.0.1:1", vhosts),
		"a": newServer("127.0.0.1:2", vhosts[:2000]),
		"c": newServer("127.0.0.1:3", vhosts[:2]),
	}
	servers["b"].Routes = append(servers["b"].Routes, istioRoute(vhosts[5:]))
	before := caddyconfig.JSON(caddyhttp.App{Servers: servers}, nil)
	got := httpAppJSON(servers, nil)
	if !bytes.Equal(got, before) {
		t.Errorf("got %.200s, want %.200s", got, before)
	}
	if after := caddyconfig.JSON(caddyhttp.App{Servers: servers}, nil); !bytes.Equal(after, before) {
		t.Error("the servers were changed")
	}
}
