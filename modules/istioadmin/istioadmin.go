// Package istioadmin implements the `admin.api.istio` module: live
// introspection of the running istio configuration on Caddy's admin API,
// like `istioctl proxy-config routes|clusters|endpoints` for an Envoy
// sidecar, the `caddy istio` command that prints it, and a small web page
// that shows it refreshing.
//
// Endpoints (GET, JSON):
//
//   - /istio/routes: per http server (listener) and virtual host, the
//     routes in order with their match summary, action, destinations and
//     split weights.
//   - /istio/clusters: the istio app's clusters with their policy
//     summary (load balancer, connection pool, outlier detection, TLS
//     mode), endpoint health counts and requests in flight.
//   - /istio/endpoints: per cluster, the endpoints with workload, labels,
//     weight, locality, outlier state (healthy, ejected until when,
//     ejection multiplier) and requests in flight.
//   - /istio/config: the Istio objects that make up the running
//     configuration. When istio_kube watchers follow an API server, every
//     object they were given, with its resourceVersion and, for an invalid
//     one, its problems and the rejected version; otherwise the objects
//     the adapted configuration records (VirtualServices, WorkloadEntries,
//     services).
//   - /istio/ui: the web page (HTML).
package istioadmin

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
	"github.com/caddy-istio/caddy-istio/modules/istiokube"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin is the `admin.api.istio` module. Caddy mounts every admin.api
// module on its admin endpoint, so a build that includes this package
// serves the endpoints without configuration. It reads the running
// configuration (caddy.ActiveContext) on each request.
type Admin struct {
	// apps returns the http and istio apps to describe; nil: the running
	// configuration's. Tests set it.
	apps func() (*caddyhttp.App, *istioapp.App)
	// inFlight returns the requests in flight per dial address; nil:
	// Caddy's reverse_proxy counters.
	inFlight func() map[string]int
	// runningObjects returns the objects the istio_kube watchers applied;
	// nil: istiokube.RunningObjects.
	runningObjects func() []istiokube.ObjectStatus
}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.istio",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the admin routes of the module.
func (a *Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/istio/routes", Handler: getOnly(a.handleRoutes)},
		{Pattern: "/istio/clusters", Handler: getOnly(a.handleClusters)},
		{Pattern: "/istio/endpoints", Handler: getOnly(a.handleEndpoints)},
		{Pattern: "/istio/config", Handler: getOnly(a.handleConfig)},
		{Pattern: "/istio/ui", Handler: getOnly(handleUI)},
	}
}

// RoutesResponse is the body of /istio/routes.
type RoutesResponse struct {
	Time    time.Time                 `json:"time"`
	Servers []istioroute.ServerRoutes `json:"servers"`
}

// ClustersResponse is the body of /istio/clusters.
type ClustersResponse struct {
	Time     time.Time       `json:"time"`
	Clusters []ClusterStatus `json:"clusters"`
}

// ClusterStatus is one cluster in /istio/clusters.
type ClusterStatus struct {
	Name    string                 `json:"name"`
	Service string                 `json:"service"`
	Port    uint32                 `json:"port"`
	Subset  string                 `json:"subset,omitempty"`
	Labels  map[string]string      `json:"labels,omitempty"`
	Policy  istioapp.PolicySummary `json:"policy"`

	// Endpoint counts by health.
	Endpoints int `json:"endpoints"`
	Healthy   int `json:"healthy"`
	Ejected   int `json:"ejected"`
	Excluded  int `json:"excluded"`

	// InFlight sums the requests in flight to the cluster's endpoints.
	// Caddy counts them per endpoint address, so an address in two
	// clusters (a subset and the whole service) counts in both.
	InFlight int `json:"in_flight"`

	// The cluster's own counters, kept only when it has circuit breakers,
	// outlier detection or a retry budget (Tracked).
	Tracked           bool  `json:"tracked"`
	ActiveRequests    int64 `json:"active_requests"`
	PendingRequests   int64 `json:"pending_requests"`
	RetriesInProgress int64 `json:"retries_in_progress"`
}

// EndpointsResponse is the body of /istio/endpoints.
type EndpointsResponse struct {
	Time     time.Time          `json:"time"`
	Clusters []ClusterEndpoints `json:"clusters"`
}

// ClusterEndpoints are the endpoints of one cluster.
type ClusterEndpoints struct {
	Cluster   string           `json:"cluster"`
	Endpoints []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint in /istio/endpoints.
type EndpointStatus struct {
	istioapp.EndpointSnapshot
	// InFlight is Caddy's count of requests in flight to the address.
	InFlight int `json:"in_flight"`
}

// ConfigResponse is the body of /istio/config.
type ConfigResponse struct {
	Time time.Time `json:"time"`
	// Source says where Objects come from: SourceKubernetes or
	// SourceConfig.
	Source  string      `json:"source"`
	Objects []ObjectRef `json:"objects"`
	// NotRecorded names the kinds the running configuration does not
	// record, so they cannot be listed. Empty for SourceKubernetes.
	NotRecorded []string `json:"not_recorded"`
}

// The sources of /istio/config.
const (
	// SourceKubernetes: the objects the istio_kube watchers were given by
	// the API server, valid or not, with their resourceVersions.
	SourceKubernetes = "kubernetes"
	// SourceConfig: the objects the adapted configuration records.
	SourceConfig = "config"
)

// ObjectRef names one Istio object of the configuration.
type ObjectRef struct {
	// Kind is the object's kind. From the configuration it is
	// VirtualService, WorkloadEntry, or Service for a registry service (a
	// Kubernetes Service or a ServiceEntry host: the configuration does
	// not say which); from Kubernetes, the API kind (DestinationRule,
	// Gateway, EndpointSlice... too).
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`

	// The rest is set only for SourceKubernetes.

	// ResourceVersion is the version of the object in the running
	// configuration; for an invalid object that never had a valid
	// version (Problems set, RejectedVersion empty), the invalid version,
	// which is not in the configuration.
	ResourceVersion string `json:"resource_version,omitempty"`
	// Problems say why the latest version was refused.
	Problems []string `json:"problems,omitempty"`
	// RejectedVersion is the refused latest version when an earlier valid
	// one (ResourceVersion) keeps serving, as with Istio's webhook.
	RejectedVersion string `json:"rejected_version,omitempty"`
}

// Status is a short form of the object's state for tables: "-" for an
// object the configuration records, else applied, rejected (an earlier
// version serves) or invalid (not in the configuration), with the
// problems.
func (o ObjectRef) Status() string {
	switch {
	case o.ResourceVersion == "" && len(o.Problems) == 0:
		return "-"
	case len(o.Problems) == 0:
		return "applied"
	case o.RejectedVersion != "":
		return "rejected " + o.RejectedVersion + ": " + oneLine(o.Problems)
	default:
		return "invalid, not applied: " + oneLine(o.Problems)
	}
}

// oneLine joins problems on one table line.
func oneLine(problems []string) string {
	return strings.Join(strings.Fields(strings.Join(problems, "; ")), " ")
}

// notRecorded are the kinds the adapted configuration does not name.
var notRecorded = []string{"DestinationRule", "Gateway", "Sidecar"}

func (a *Admin) handleRoutes(w http.ResponseWriter, r *http.Request) error {
	httpApp, _ := a.currentApps()
	resp := RoutesResponse{Time: time.Now(), Servers: istioroute.Handlers(httpApp)}
	if resp.Servers == nil {
		resp.Servers = []istioroute.ServerRoutes{}
	}
	return writeJSON(w, resp)
}

func (a *Admin) handleClusters(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, a.Clusters())
}

func (a *Admin) handleEndpoints(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, a.Endpoints())
}

func (a *Admin) handleConfig(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, a.Config())
}

// Clusters returns the body of /istio/clusters.
func (a *Admin) Clusters() ClustersResponse {
	_, app := a.currentApps()
	inFlight := a.currentInFlight()
	resp := ClustersResponse{Time: time.Now(), Clusters: []ClusterStatus{}}
	for _, c := range app.Snapshot() {
		cs := ClusterStatus{
			Name: c.Name, Service: c.Service, Port: c.Port, Subset: c.Subset, Labels: c.Labels,
			Policy:            c.Policy,
			Endpoints:         len(c.Endpoints),
			Tracked:           c.Tracked,
			ActiveRequests:    c.ActiveRequests,
			PendingRequests:   c.PendingRequests,
			RetriesInProgress: c.RetriesInProgress,
		}
		for _, ep := range c.Endpoints {
			switch ep.Health {
			case istioapp.EndpointEjected:
				cs.Ejected++
			case istioapp.EndpointExcluded:
				cs.Excluded++
			default:
				cs.Healthy++
			}
			cs.InFlight += inFlight[ep.Address]
		}
		resp.Clusters = append(resp.Clusters, cs)
	}
	return resp
}

// Endpoints returns the body of /istio/endpoints.
func (a *Admin) Endpoints() EndpointsResponse {
	_, app := a.currentApps()
	inFlight := a.currentInFlight()
	resp := EndpointsResponse{Time: time.Now(), Clusters: []ClusterEndpoints{}}
	for _, c := range app.Snapshot() {
		ce := ClusterEndpoints{Cluster: c.Name, Endpoints: []EndpointStatus{}}
		for _, ep := range c.Endpoints {
			ce.Endpoints = append(ce.Endpoints, EndpointStatus{EndpointSnapshot: ep, InFlight: inFlight[ep.Address]})
		}
		resp.Clusters = append(resp.Clusters, ce)
	}
	return resp
}

// Config returns the body of /istio/config: the objects the istio_kube
// watchers applied, if any run, else the VirtualServices named by the
// routes, the named WorkloadEntries and the registry services, each once,
// sorted.
func (a *Admin) Config() ConfigResponse {
	if running := a.currentRunningObjects(); len(running) > 0 {
		objects := make([]ObjectRef, 0, len(running))
		for _, o := range running {
			objects = append(objects, ObjectRef{
				Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
				ResourceVersion: o.ResourceVersion,
				Problems:        o.Problems,
				RejectedVersion: o.RejectedVersion,
			})
		}
		return ConfigResponse{Time: time.Now(), Source: SourceKubernetes, Objects: objects, NotRecorded: []string{}}
	}
	httpApp, app := a.currentApps()
	// ObjectRef has a slice field: the set is keyed by its names
	type key struct{ kind, namespace, name string }
	seen := make(map[key]bool)
	for _, sr := range istioroute.Handlers(httpApp) {
		for _, h := range sr.Handlers {
			for _, vh := range h.VirtualHosts {
				for _, rt := range vh.Routes {
					if rt.VirtualService == "" {
						continue
					}
					ns, name := splitRef(rt.VirtualService)
					seen[key{"VirtualService", ns, name}] = true
				}
			}
		}
	}
	if app != nil {
		for _, svc := range app.Services {
			if svc == nil {
				continue
			}
			seen[key{"Service", svc.Namespace, svc.Hostname}] = true
			for _, w := range svc.Endpoints {
				if w != nil && w.Name != "" {
					seen[key{"WorkloadEntry", cmp.Or(w.Namespace, svc.Namespace), w.Name}] = true
				}
			}
		}
		for _, w := range app.Workloads {
			if w != nil && w.Name != "" {
				seen[key{"WorkloadEntry", w.Namespace, w.Name}] = true
			}
		}
	}
	keys := slices.SortedFunc(maps.Keys(seen), func(x, y key) int {
		return cmp.Or(cmp.Compare(x.kind, y.kind), cmp.Compare(x.namespace, y.namespace), cmp.Compare(x.name, y.name))
	})
	objects := make([]ObjectRef, 0, len(keys))
	for _, k := range keys {
		objects = append(objects, ObjectRef{Kind: k.kind, Namespace: k.namespace, Name: k.name})
	}
	return ConfigResponse{Time: time.Now(), Source: SourceConfig, Objects: objects, NotRecorded: notRecorded}
}

// splitRef splits "namespace/name"; a ref without a slash is a name.
func splitRef(ref string) (namespace, name string) {
	if ns, n, ok := strings.Cut(ref, "/"); ok {
		return ns, n
	}
	return "", ref
}

// currentApps returns the http and istio apps of the running
// configuration (nil for an app it does not have).
func (a *Admin) currentApps() (*caddyhttp.App, *istioapp.App) {
	if a.apps != nil {
		return a.apps()
	}
	ctx := caddy.ActiveContext()
	var httpApp *caddyhttp.App
	var app *istioapp.App
	// AppIfConfigured only reads the apps of a running configuration
	if v, err := ctx.AppIfConfigured("http"); err == nil {
		httpApp, _ = v.(*caddyhttp.App)
	}
	if v, err := ctx.AppIfConfigured("istio"); err == nil {
		app, _ = v.(*istioapp.App)
	}
	return httpApp, app
}

// currentRunningObjects returns the objects the istio_kube watchers
// applied (none when no watcher runs).
func (a *Admin) currentRunningObjects() []istiokube.ObjectStatus {
	if a.runningObjects != nil {
		return a.runningObjects()
	}
	return istiokube.RunningObjects()
}

// currentInFlight returns the requests in flight per dial address.
func (a *Admin) currentInFlight() map[string]int {
	if a.inFlight != nil {
		return a.inFlight()
	}
	return reverseProxyInFlight()
}

// reverseProxyInFlight reads Caddy's reverse_proxy counters of requests in
// flight per upstream address. They are not exported as a Go API, only
// through the admin.api.reverse_proxy module's /reverse_proxy/upstreams
// endpoint, which is called here in-process. That endpoint may list an
// address twice (its host entry and its in-flight entry count the same
// requests), so the larger count is kept.
func reverseProxyInFlight() map[string]int {
	info, err := caddy.GetModule("admin.api.reverse_proxy")
	if err != nil {
		return nil
	}
	router, ok := info.New().(caddy.AdminRouter)
	if !ok {
		return nil
	}
	for _, route := range router.Routes() {
		if route.Pattern != "/reverse_proxy/upstreams" {
			continue
		}
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/reverse_proxy/upstreams", nil)
		if err := route.Handler.ServeHTTP(rec, req); err != nil || rec.Code != http.StatusOK {
			return nil
		}
		var upstreams []struct {
			Address     string `json:"address"`
			NumRequests int    `json:"num_requests"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &upstreams); err != nil {
			return nil
		}
		out := make(map[string]int, len(upstreams))
		for _, u := range upstreams {
			out[u.Address] = max(out[u.Address], u.NumRequests)
		}
		return out
	}
	return nil
}

// getOnly answers methods other than GET (and HEAD) with 405.
func getOnly(f caddy.AdminHandlerFunc) caddy.AdminHandler {
	return caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed")}
		}
		return f(w, r)
	})
}

// writeJSON writes v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return nil
}

// Interface guards
var _ caddy.AdminRouter = (*Admin)(nil)
