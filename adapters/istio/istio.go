// Package istio implements the `istio` config adapter (module
// caddy.adapters.istio): it translates Istio traffic-management resources
// (VirtualService, DestinationRule, Gateway, ServiceEntry, WorkloadEntry,
// Sidecar) and Kubernetes Services into Caddy JSON:
//
//   - the registry (Services, ServiceEntries, WorkloadEntries) and one
//     cluster per service port and DestinationRule subset become the
//     `istio` app;
//   - Gateway servers and the mesh (Sidecar egress) listeners become `http`
//     servers that run `istio_route` (after `istio_egress` on the mesh
//     listeners; HTTPS servers through the `tls` app or the `istio_mtls`
//     listener wrapper); TLS passthrough and TCP servers and listeners
//     become `layer4` servers (caddy-l4) routing on SNI or port;
//   - VirtualServices become that handler's virtual hosts and routes, with
//     delegates merged into their roots as Istio merges them.
//
// Istio evaluates match.sourceLabels and match.sourceNamespace when it
// builds a proxy's configuration, against that proxy's labels and
// namespace. This Caddy's identity is, per listener: the Sidecar's
// workloadSelector labels and namespace on a Sidecar's mesh listeners, no
// labels and namespace "default" on the default mesh listener, and the
// Gateway's selector labels and namespace on a Gateway's listener (see
// proxyIdentity). That namespace also decides which VirtualServices the
// listener sees: those exported to it (spec.exportTo).
//
// The translation is pure: no listeners, goroutines or runtime state. What
// it cannot express yet becomes a warning naming the field, and the
// translation goes on; only invalid input is an error.
package istio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/adapters/istio/validation"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

func init() {
	caddyconfig.RegisterAdapter("istio", Adapter{})
}

// Adapter adapts multi-document Istio YAML to Caddy JSON.
type Adapter struct{}

// Adapt decodes body, validates every object as Istio would, and translates
// the objects into Caddy JSON. Options may be nil (the admin API's /load
// passes none); options["filename"] names the file in messages and
// options["namespace"] is the namespace of objects that have none (default
// "default").
//
// Invalid input gives one error listing every problem, one per line, in
// document order. Otherwise the warnings say what is not translated.
func (Adapter) Adapt(body []byte, options map[string]any) ([]byte, []caddyconfig.Warning, error) {
	filename, _ := options["filename"].(string)
	namespace, _ := options["namespace"].(string)

	objs, warnings, err := DecodeAndValidate(filename, body, namespace)
	if err != nil {
		return nil, caddyWarnings(warnings), err
	}

	cfg, translateWarnings := Translate(objs, Options{CredentialsDir: CredentialsDir(filename)})
	warnings = append(warnings, translateWarnings...)
	sortProblems(warnings)

	var cw []caddyconfig.Warning
	result, err := marshalConfig(cfg)
	if err != nil {
		return nil, cw, fmt.Errorf("encoding the caddy config: %v", err)
	}
	return result, caddyWarnings(warnings), nil
}

// marshalConfig encodes cfg as json.Marshal does. A config of apps alone
// (what Translate gives) is written around the apps' JSON as it is:
// json.Marshal would scan all of it again to compact it, and it is
// compact already (encoding/json wrote it).
func marshalConfig(cfg *caddy.Config) ([]byte, error) {
	if cfg.Admin != nil || cfg.Logging != nil || cfg.StorageRaw != nil {
		return json.Marshal(cfg)
	}
	if len(cfg.AppsRaw) == 0 {
		return []byte("{}"), nil
	}
	size := 16
	for name, raw := range cfg.AppsRaw {
		size += len(name) + len(raw) + 8
	}
	out := make([]byte, 0, size)
	out = append(out, `{"apps":{`...)
	for i, name := range slices.Sorted(maps.Keys(cfg.AppsRaw)) {
		if i > 0 {
			out = append(out, ',')
		}
		key, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		out = append(append(out, key...), ':')
		if raw := cfg.AppsRaw[name]; raw != nil {
			out = append(out, raw...)
		} else {
			out = append(out, "null"...)
		}
	}
	return append(out, "}}"...), nil
}

// DecodeAndValidate decodes the multi-document Istio YAML body (named
// filename in messages) as Adapt does, objects without a namespace going to
// namespace (default "default"), and validates every object as Istio
// would. Invalid input gives one error listing every problem, one per line,
// in document order; the warnings say what Istio would warn about.
func DecodeAndValidate(filename string, body []byte, namespace string) ([]*istioyaml.Object, []istioyaml.Problem, error) {
	objs, warnings, errs := istioyaml.Decode(filename, body, istioyaml.Options{DefaultNamespace: namespace})
	for _, r := range validateAll(objs) {
		warnings = append(warnings, r.warnings...)
		errs = append(errs, r.errs...)
	}
	sortProblems(warnings)
	if len(errs) > 0 {
		sortProblems(errs)
		lines := make([]string, len(errs))
		for i, p := range errs {
			lines[i] = p.Error()
		}
		return nil, warnings, errors.New(strings.Join(lines, "\n"))
	}
	return objs, warnings, nil
}

// validated is what validation.Validate says about one object.
type validated struct{ warnings, errs []istioyaml.Problem }

// validateAll validates every object, on GOMAXPROCS goroutines when there
// are many (each object is validated on its own), and returns the results
// in the objects' order.
func validateAll(objs []*istioyaml.Object) []validated {
	results := make([]validated, len(objs))
	validateRange := func(start, end int) {
		for i := start; i < end; i++ {
			results[i].warnings, results[i].errs = validation.Validate(objs[i])
		}
	}
	const minPerWorker = 256
	workers := min(runtime.GOMAXPROCS(0), len(objs)/minPerWorker)
	if workers <= 1 {
		validateRange(0, len(objs))
		return results
	}
	var wg sync.WaitGroup
	per := (len(objs) + workers - 1) / workers
	for start := 0; start < len(objs); start += per {
		wg.Go(func() { validateRange(start, min(start+per, len(objs))) })
	}
	wg.Wait()
	return results
}

// Options tune Translate.
type Options struct {
	// MeshListen is the address of the mesh listener used when no Sidecar
	// egress listener has a port: it serves every registry service and
	// every mesh VirtualService by Host header. Istio's sidecar captures
	// outbound traffic on 0.0.0.0:15001; we listen on loopback by default so
	// that loading a config never opens a port to the network.
	// Default: 127.0.0.1:15001.
	MeshListen string

	// CredentialsDir is where Gateway credentialNames are resolved (see
	// ResolveCredential); Adapt sets it from the config file name (see
	// CredentialsDir). Empty: no credential is found.
	CredentialsDir string
}

// DefaultMeshListen is the mesh listener address when Options.MeshListen is
// empty.
const DefaultMeshListen = "127.0.0.1:15001"

// Translate builds the Caddy config for objs, which must be valid (decoded
// by istioyaml.Decode and accepted by validation.Validate). The problems it
// returns are warnings: what is not implemented or cannot take effect. The
// config never sets `admin`, so the admin endpoint stays under the user's
// control (CADDY_ADMIN, flags).
func Translate(objs []*istioyaml.Object, opts Options) (*caddy.Config, []istioyaml.Problem) {
	if opts.MeshListen == "" {
		opts.MeshListen = DefaultMeshListen
	}
	t := newTranslator(objs, opts)
	t.buildRegistry()
	t.mesh = t.buildMesh()
	t.buildClusters()
	servers, gatewayTLS := t.buildServers()

	var cw []caddyconfig.Warning
	apps := caddy.ModuleMap{
		"istio": caddyconfig.JSON(appConfig{
			Services:  t.registryServices(),
			Workloads: t.workloads,
			Clusters:  t.clusters,
			Mesh:      t.mesh,
		}, &cw),
	}
	if len(servers) > 0 {
		apps["http"] = httpAppJSON(servers, &cw)
	}
	if l4 := t.layer4App(servers); l4 != nil {
		apps["layer4"] = l4
	}
	if tlsApp, pkiApp := gatewayTLS.apps(); tlsApp != nil {
		apps["tls"] = tlsApp
		if pkiApp != nil {
			apps["pki"] = pkiApp
		}
	}
	for _, w := range cw {
		// Marshalling typed structs does not fail; if it ever does, say so
		// rather than emit a silently broken config.
		t.problems = append(t.problems, istioyaml.Problem{Message: "encoding: " + w.Message})
	}
	sortProblems(t.problems)
	return &caddy.Config{AppsRaw: apps}, t.problems
}

// httpAppJSON is caddyconfig.JSON(caddyhttp.App{Servers: servers}). The
// large handlers (istio_route with many virtual hosts) stand in as short
// placeholders while the app is encoded and are put in its JSON after:
// encoding/json would scan each again to compact it, and they are compact
// already (encoding/json wrote them).
func httpAppJSON(servers map[string]*caddyhttp.Server, warnings *[]caddyconfig.Warning) json.RawMessage {
	type swapped struct {
		handlers    []json.RawMessage
		i           int
		raw         json.RawMessage
		placeholder []byte
	}
	var swaps []swapped
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		for _, route := range servers[name].Routes {
			for i, raw := range route.HandlersRaw {
				if len(raw) < 64<<10 {
					continue
				}
				ph := fmt.Appendf(nil, `"caddy-istio placeholder %d"`, len(swaps))
				swaps = append(swaps, swapped{handlers: route.HandlersRaw, i: i, raw: raw, placeholder: ph})
				route.HandlersRaw[i] = ph
			}
		}
	}
	out := caddyconfig.JSON(caddyhttp.App{Servers: servers}, warnings)
	for _, s := range swaps {
		s.handlers[s.i] = s.raw
	}
	if len(swaps) == 0 || out == nil {
		return out
	}
	size := len(out)
	for _, s := range swaps {
		if bytes.Count(out, s.placeholder) != 1 {
			return caddyconfig.JSON(caddyhttp.App{Servers: servers}, warnings)
		}
		size += len(s.raw)
	}
	spliced := make([]byte, 0, size)
	rest := []byte(out)
	for {
		// the next placeholder in the output
		at, which := -1, -1
		for j, s := range swaps {
			if k := bytes.Index(rest, s.placeholder); k >= 0 && (at < 0 || k < at) {
				at, which = k, j
			}
		}
		if at < 0 {
			break
		}
		spliced = append(spliced, rest[:at]...)
		spliced = append(spliced, swaps[which].raw...)
		rest = rest[at+len(swaps[which].placeholder):]
	}
	return append(spliced, rest...)
}

// appConfig is the JSON of the `istio` app (istioapp.App's config fields).
type appConfig struct {
	Services  []*istioapp.Service  `json:"services,omitempty"`
	Workloads []*istioapp.Workload `json:"workloads,omitempty"`
	Clusters  []*istioapp.Cluster  `json:"clusters,omitempty"`
	Mesh      *istioapp.Mesh       `json:"mesh,omitempty"`
}

// sortProblems puts problems in document order: by file, document and
// line, keeping the order of problems on one line.
func sortProblems(ps []istioyaml.Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Doc != b.Doc {
			return a.Doc < b.Doc
		}
		return a.Line < b.Line
	})
}

// caddyWarnings converts problems to Caddy adapter warnings: the field path
// is the directive and the message names the resource.
func caddyWarnings(ps []istioyaml.Problem) []caddyconfig.Warning {
	if len(ps) == 0 {
		return nil
	}
	out := make([]caddyconfig.Warning, 0, len(ps))
	for _, p := range ps {
		msg := p.Message
		if p.Kind != "" {
			msg = p.Kind + " " + p.Namespace + "/" + p.Name + ": " + msg
		}
		if p.Doc > 0 && p.Kind == "" {
			msg = fmt.Sprintf("document %d: %s", p.Doc, msg)
		}
		out = append(out, caddyconfig.Warning{
			File:      p.File,
			Line:      p.Line,
			Directive: p.Field,
			Message:   msg,
		})
	}
	return out
}

// Interface guards
var _ caddyconfig.Adapter = (*Adapter)(nil)
