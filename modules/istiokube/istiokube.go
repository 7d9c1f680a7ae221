// Package istiokube implements the config loader caddy.config_loaders.istio_kube:
// Caddy follows a Kubernetes API server as istiod's proxies do. It lists and
// watches VirtualService, DestinationRule, Gateway, ServiceEntry,
// WorkloadEntry and Sidecar (networking.istio.io/v1, with istio.io/client-go
// informers) and Services with their EndpointSlices, translates them with
// the istio adapter (adapters/istio), and applies the result as a graceful
// Caddy reload.
//
// Why a config loader: it is Caddy's own hook for configs that come from
// elsewhere (admin.config.load), it starts before any app, and it keeps
// working when the loaded config replaces the whole config, which every
// translation does. Caddy calls a loader once per config, so the loader
// starts a watcher shared by all configs that carry the same loader
// settings (a caddy.UsagePool entry, so informers and their caches survive
// reloads), and the watcher applies each new translation with caddy.Load.
// Every config it applies carries the same admin.config.load section, which
// keeps the watcher referenced; a config loaded by other means without it
// stops the watcher. load_delay must be positive (Caddy refuses pulled
// configs that pull again without one); it is set to the debounce.
//
//	{"admin": {"config": {"load_delay": "100ms", "load": {
//	    "module": "istio_kube", "namespaces": ["bookinfo"]}}}}
package istiokube

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Loader{})
}

// Loader is the istio_kube config loader.
type Loader struct {
	// Kubeconfig is the path of a kubeconfig file. Empty: the in-cluster
	// config (service account token), else $KUBECONFIG.
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// Namespaces to watch. Empty: all namespaces.
	Namespaces []string `json:"namespaces,omitempty"`

	// LabelSelector (Kubernetes syntax, e.g. "app=bookinfo,tier!=test")
	// filters the Istio objects and Services watched. EndpointSlices are
	// matched to their Service by the kubernetes.io/service-name label, not
	// by this selector.
	LabelSelector string `json:"label_selector,omitempty"`

	// Debounce is how long the watcher waits after a change for more
	// changes before it translates and reloads; a steady stream of changes
	// still reloads at least every 10 debounce periods. Default: 100ms.
	Debounce caddy.Duration `json:"debounce,omitempty"`

	// MeshListen is the mesh listener address given to the adapter
	// (istio.Options.MeshListen). Default: 127.0.0.1:15001.
	MeshListen string `json:"mesh_listen,omitempty"`

	// CredentialsDir is where Gateway credentialNames are resolved
	// (istio.Options.CredentialsDir). Empty: no credential is found.
	CredentialsDir string `json:"credentials_dir,omitempty"`

	// Base is a Caddy config the translation is merged into: its admin
	// (without config, which the loader sets), logging, storage and apps
	// other than istio, http, tls, pki and layer4 (which the translation
	// owns) are kept in every applied config. Repeat here the admin listen
	// address of the bootstrap config if it is not the default.
	Base json.RawMessage `json:"base,omitempty"`

	// DisableEvents stops the loader from recording Kubernetes Events on
	// invalid objects (it then needs no create permission on events).
	DisableEvents bool `json:"disable_events,omitempty"`

	watcher *watcher
	key     string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Loader) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.config_loaders.istio_kube",
		New: func() caddy.Module { return new(Loader) },
	}
}

// Provision sets defaults and joins the watcher of these settings, which
// the previous config may have started.
func (l *Loader) Provision(ctx caddy.Context) error {
	l.logger = ctx.Logger()
	if l.Debounce <= 0 {
		l.Debounce = caddy.Duration(100 * time.Millisecond)
	}
	if len(l.Base) > 0 {
		var base map[string]json.RawMessage
		if err := json.Unmarshal(l.Base, &base); err != nil {
			return fmt.Errorf("base: %v", err)
		}
	}
	key, err := json.Marshal(l)
	if err != nil {
		return err
	}
	l.key = string(key)
	val, _, err := watchers.LoadOrNew(l.key, func() (caddy.Destructor, error) {
		return newWatcher(*l, caddy.Log().Named("istio_kube"))
	})
	if err != nil {
		return err
	}
	l.watcher = val.(*watcher)
	return nil
}

// LoadConfig starts the watcher (once) and returns no config: the watcher
// applies configs itself with caddy.Load, in order. It waits for the
// watcher's first config, or for this config to be replaced, so that Caddy
// does not ask again at once; Caddy retries a nil config after load_delay.
func (l *Loader) LoadConfig(ctx caddy.Context) ([]byte, error) {
	l.watcher.start()
	if l.watcher.appliedOnce() {
		<-ctx.Done()
		return nil, nil
	}
	select {
	case <-ctx.Done():
	case <-l.watcher.firstApplied:
	case <-time.After(5 * time.Second):
	}
	return nil, nil
}

// Cleanup releases this config's use of the watcher; the last user stops it.
func (l *Loader) Cleanup() error {
	if l.key != "" {
		_, err := watchers.Delete(l.key)
		return err
	}
	return nil
}

// watchers are the running watchers by their loader settings.
var watchers = caddy.NewUsagePool()

// Interface guards
var (
	_ caddy.Provisioner  = (*Loader)(nil)
	_ caddy.CleanerUpper = (*Loader)(nil)
	_ caddy.ConfigLoader = (*Loader)(nil)
)
