// Package istioapp implements the `istio` Caddy app: the service registry
// (ServiceEntries, WorkloadEntries, Kubernetes Services) and the clusters
// (service port x DestinationRule subset), each proxied by a Caddy
// reverse_proxy handler whose upstreams come from the registry.
package istioapp

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `istio` app: the registry of services and workloads that
// Istio's traffic-management resources describe, and the clusters that
// route destinations name.
//
// The app is immutable once provisioned: a new configuration builds a new
// App, so request handling needs no locks.
type App struct {
	// Services of the registry, by unique hostname.
	Services []*Service `json:"services,omitempty"`

	// Workloads are standalone WorkloadEntries; a service selects those of
	// its namespace whose labels contain its selector.
	Workloads []*Workload `json:"workloads,omitempty"`

	// Clusters are the proxy targets that routes name, one per service port
	// and DestinationRule subset.
	Clusters []*Cluster `json:"clusters,omitempty"`

	// Mesh is this proxy's mesh identity and locality. Nil: the defaults
	// of Mesh.
	Mesh *Mesh `json:"mesh,omitempty"`

	registry *registry
	clusters map[string]*ClusterHandler
	// provisioned lists the clusters whose reverse_proxy was provisioned, in
	// order, so Cleanup releases exactly those (also after a failed Provision).
	provisioned []*ClusterHandler

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "istio",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision builds the registry and provisions one reverse_proxy per cluster.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()

	reg, err := newRegistry(a.Services, a.Workloads)
	if err != nil {
		return err
	}
	a.registry = reg

	a.clusters = make(map[string]*ClusterHandler, len(a.Clusters))
	for i, c := range a.Clusters {
		if c == nil {
			return fmt.Errorf("cluster %d: null", i)
		}
		if c.Name == "" {
			return fmt.Errorf("cluster %d: missing name", i)
		}
		if _, dup := a.clusters[c.Name]; dup {
			return fmt.Errorf("cluster %q: defined more than once", c.Name)
		}
		ch, err := a.provisionCluster(ctx, c)
		if err != nil {
			return fmt.Errorf("cluster %q: %v", c.Name, err)
		}
		a.clusters[c.Name] = ch
	}

	a.logger.Info("istio registry loaded",
		zap.Int("services", len(a.Services)),
		zap.Int("workloads", len(a.Workloads)),
		zap.Int("clusters", len(a.clusters)))
	return nil
}

// Start implements caddy.App; the app has no listeners or workers of its own.
func (a *App) Start() error { return nil }

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases the reverse_proxy handlers the app provisioned itself
// (Caddy cleans up only the modules it loaded).
func (a *App) Cleanup() error {
	var firstErr error
	for _, ch := range a.provisioned {
		if err := ch.proxy.Cleanup(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("cluster %q: cleanup: %v", ch.name, err)
		}
		ch.lease.release()
		ch.lease = nil
	}
	a.provisioned = nil
	return firstErr
}

// ClusterHandler returns the provisioned cluster of that name (Istio's
// outbound|PORT|SUBSET|HOST), or nil if the configuration has none.
func (a *App) ClusterHandler(name string) *ClusterHandler {
	return a.clusters[name]
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
