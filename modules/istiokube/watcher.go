package istiokube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/caddy-istio/caddy-istio/adapters/istio"
)

// watcher follows the API server for one set of loader settings and applies
// every new translation with caddy.Load.
type watcher struct {
	settings Loader
	logger   *zap.Logger
	kube     kubernetes.Interface
	istio    istioclient.Interface

	startOnce    sync.Once
	stop         chan struct{}
	changed      chan struct{}
	firstApplied chan struct{}
	applied      atomic.Bool

	informers []*source

	mu       sync.Mutex
	decoded  map[string]*decodedObject // by kind/namespace/name
	reported map[string]string         // resourceVersion whose problems were reported, by kind/namespace/name
	lastJSON []byte
	running  []ObjectStatus
}

// source is one informer and the kind of object it holds.
type source struct {
	kind     string
	informer cache.SharedIndexInformer
}

func newWatcher(settings Loader, logger *zap.Logger) (*watcher, error) {
	restConfig, err := restConfig(settings.Kubeconfig)
	if err != nil {
		return nil, err
	}
	restConfig.UserAgent = "caddy-istio/istio_kube"
	kube, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %v", err)
	}
	ic, err := istioclient.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("istio client: %v", err)
	}
	return newWatcherWithClients(settings, logger, kube, ic), nil
}

func newWatcherWithClients(settings Loader, logger *zap.Logger, kube kubernetes.Interface, ic istioclient.Interface) *watcher {
	return &watcher{
		settings:     settings,
		logger:       logger,
		kube:         kube,
		istio:        ic,
		stop:         make(chan struct{}),
		changed:      make(chan struct{}, 1),
		firstApplied: make(chan struct{}),
		decoded:      map[string]*decodedObject{},
		reported:     map[string]string{},
	}
}

// restConfig is the kubeconfig at path, else the in-cluster config, else
// $KUBECONFIG.
func restConfig(path string) (*rest.Config, error) {
	if path != "" {
		return clientcmd.BuildConfigFromFlags("", path)
	}
	cfg, err := rest.InClusterConfig()
	if err == nil {
		return cfg, nil
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return clientcmd.BuildConfigFromFlags("", env)
	}
	return nil, fmt.Errorf("no kubeconfig given and not in a cluster: %v", err)
}

// start starts the informers and the apply loop, once.
func (w *watcher) start() {
	w.startOnce.Do(func() {
		w.startInformers()
		go w.run()
	})
}

func (w *watcher) appliedOnce() bool { return w.applied.Load() }

// Destruct stops the informers when the last config using them is gone.
func (w *watcher) Destruct() error {
	close(w.stop)
	return nil
}

func (w *watcher) startInformers() {
	namespaces := w.settings.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	selector := func(o *metav1.ListOptions) { o.LabelSelector = w.settings.LabelSelector }
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.notify() },
		UpdateFunc: func(any, any) { w.notify() },
		DeleteFunc: func(any) { w.notify() },
	}
	for _, ns := range namespaces {
		isf := istioinformers.NewSharedInformerFactoryWithOptions(w.istio, 0,
			istioinformers.WithNamespace(ns), istioinformers.WithTweakListOptions(selector))
		net := isf.Networking().V1()
		ksf := informers.NewSharedInformerFactoryWithOptions(w.kube, 0,
			informers.WithNamespace(ns), informers.WithTweakListOptions(selector))
		esf := informers.NewSharedInformerFactoryWithOptions(w.kube, 0, informers.WithNamespace(ns))
		w.informers = append(w.informers,
			&source{"VirtualService", net.VirtualServices().Informer()},
			&source{"DestinationRule", net.DestinationRules().Informer()},
			&source{"Gateway", net.Gateways().Informer()},
			&source{"ServiceEntry", net.ServiceEntries().Informer()},
			&source{"WorkloadEntry", net.WorkloadEntries().Informer()},
			&source{"Sidecar", net.Sidecars().Informer()},
			&source{"Service", ksf.Core().V1().Services().Informer()},
			&source{"EndpointSlice", esf.Discovery().V1().EndpointSlices().Informer()},
		)
		isf.Start(w.stop)
		ksf.Start(w.stop)
		esf.Start(w.stop)
	}
	for _, s := range w.informers {
		_, _ = s.informer.AddEventHandler(handler)
		kind := s.kind
		_ = s.informer.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			// client-go retries with backoff; the running config stays.
			w.logger.Warn("watch failed; keeping the running config and retrying",
				zap.String("kind", kind), zap.Error(err))
		})
	}
}

// notify records a change for the apply loop.
func (w *watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// run waits for the caches, then translates and applies after every
// debounced burst of changes.
func (w *watcher) run() {
	syncs := make([]cache.InformerSynced, len(w.informers))
	for i, s := range w.informers {
		syncs[i] = s.informer.HasSynced
	}
	if !cache.WaitForCacheSync(w.stop, syncs...) {
		return
	}
	debounce := time.Duration(w.settings.Debounce)
	for {
		w.update()
		select {
		case <-w.stop:
			return
		case <-w.changed:
		}
		quiet := time.NewTimer(debounce)
		deadline := time.NewTimer(10 * debounce)
	burst:
		for {
			select {
			case <-w.stop:
				quiet.Stop()
				deadline.Stop()
				return
			case <-w.changed:
				quiet.Reset(debounce)
			case <-quiet.C:
				break burst
			case <-deadline.C:
				break burst
			}
		}
		quiet.Stop()
		deadline.Stop()
	}
}

// update translates the cached objects and applies the config if it
// changed. A config that Caddy refuses is logged; the running one stays.
func (w *watcher) update() {
	cfgJSON, status, err := w.build()
	if err != nil {
		w.logger.Error("building the config; keeping the running config", zap.Error(err))
		return
	}
	w.mu.Lock()
	same := bytes.Equal(cfgJSON, w.lastJSON)
	w.mu.Unlock()
	if same {
		w.setRunning(status)
		return
	}
	start := time.Now()
	if err := caddy.Load(cfgJSON, false); err != nil {
		w.logger.Error("applying the translated config; keeping the running config", zap.Error(err))
		return
	}
	w.mu.Lock()
	w.lastJSON = cfgJSON
	w.mu.Unlock()
	w.setRunning(status)
	w.logger.Info("applied config from the API server",
		zap.Int("objects", countValid(status)), zap.Int("bytes", len(cfgJSON)),
		zap.Duration("load_time", time.Since(start)))
	if w.applied.CompareAndSwap(false, true) {
		close(w.firstApplied)
	}
}

func (w *watcher) setRunning(status []ObjectStatus) {
	w.mu.Lock()
	w.running = status
	w.mu.Unlock()
}

// build lists the informers' caches, converts and validates what changed
// since the last build, and returns the Caddy config of the valid objects
// with the status of every object.
func (w *watcher) build() ([]byte, []ObjectStatus, error) {
	var items []listed
	for _, s := range w.informers {
		for _, o := range s.informer.GetStore().List() {
			items = append(items, listed{kind: s.kind, obj: o})
		}
	}
	objs, status := w.convert(items)
	translated, warnings := istio.Translate(objs, istio.Options{
		MeshListen:     w.settings.MeshListen,
		CredentialsDir: w.settings.CredentialsDir,
	})
	for _, p := range warnings {
		w.logger.Debug("translation warning", zap.String("warning", p.Error()))
	}
	cfgJSON, err := w.assemble(translated)
	return cfgJSON, status, err
}

// ownedApps are the apps the translation makes; a base config's apps of
// these names are replaced.
var ownedApps = []string{"istio", "http", "tls", "pki", "layer4"}

// assemble merges the translated apps into the base config and sets the
// admin.config section that keeps this loader (and so the watcher) in the
// running config.
func (w *watcher) assemble(translated *caddy.Config) ([]byte, error) {
	out := map[string]json.RawMessage{}
	if len(w.settings.Base) > 0 {
		if err := json.Unmarshal(w.settings.Base, &out); err != nil {
			return nil, fmt.Errorf("base: %v", err)
		}
	}
	apps := map[string]json.RawMessage{}
	if raw, ok := out["apps"]; ok {
		if err := json.Unmarshal(raw, &apps); err != nil {
			return nil, fmt.Errorf("base apps: %v", err)
		}
	}
	for _, name := range ownedApps {
		delete(apps, name)
	}
	for name, raw := range translated.AppsRaw {
		apps[name] = raw
	}
	admin := map[string]json.RawMessage{}
	if raw, ok := out["admin"]; ok {
		if err := json.Unmarshal(raw, &admin); err != nil {
			return nil, fmt.Errorf("base admin: %v", err)
		}
	}
	loader, err := json.Marshal(w.settings)
	if err != nil {
		return nil, err
	}
	loader = append([]byte(`{"module":"istio_kube",`), bytes.TrimPrefix(loader, []byte("{"))...)
	if bytes.Equal(loader, []byte(`{"module":"istio_kube",}`)) {
		loader = []byte(`{"module":"istio_kube"}`)
	}
	configSection, err := json.Marshal(map[string]any{
		"load":       json.RawMessage(loader),
		"load_delay": w.settings.Debounce,
		// Each reload would rewrite autosave.json; the API server is the
		// source of truth.
		"persist": false,
	})
	if err != nil {
		return nil, err
	}
	admin["config"] = configSection
	var errs []error
	out["apps"], err = json.Marshal(apps)
	errs = append(errs, err)
	out["admin"], err = json.Marshal(admin)
	errs = append(errs, err)
	cfgJSON, err := json.Marshal(out)
	errs = append(errs, err)
	return cfgJSON, errors.Join(errs...)
}

// ObjectStatus is one object the API server gave a running watcher.
type ObjectStatus struct {
	Kind            string `json:"kind"`
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion"`
	// Problems say why the object's latest version was skipped. If an
	// earlier version was valid, it is the one in the config:
	// ResourceVersion is that version's and RejectedVersion the latest's.
	Problems        []string `json:"problems,omitempty"`
	RejectedVersion string   `json:"rejectedVersion,omitempty"`
}

// RunningObjects returns the objects, with their resourceVersions, that
// make up the configs the istio_kube watchers applied last, and the
// objects they rejected as invalid (Problems set), sorted by kind,
// namespace and name. Empty when no watcher runs. For the admin API and
// `caddy istio`.
func RunningObjects() []ObjectStatus {
	var out []ObjectStatus
	watchers.Range(func(_, value any) bool {
		w := value.(*watcher)
		w.mu.Lock()
		out = append(out, w.running...)
		w.mu.Unlock()
		return true
	})
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

func countValid(status []ObjectStatus) int {
	n := 0
	for _, s := range status {
		if len(s.Problems) == 0 || s.RejectedVersion != "" {
			n++
		}
	}
	return n
}

// reportInvalid logs the problems of an object once per resourceVersion and
// records a Warning Event on it.
func (w *watcher) reportInvalid(kind string, meta metav1.Object, apiVersion string, problems []string) {
	key := kind + "/" + meta.GetNamespace() + "/" + meta.GetName()
	if w.reported[key] == meta.GetResourceVersion() {
		return
	}
	w.reported[key] = meta.GetResourceVersion()
	for _, p := range problems {
		w.logger.Warn("skipping invalid object; the last good config keeps serving",
			zap.String("kind", kind), zap.String("namespace", meta.GetNamespace()),
			zap.String("name", meta.GetName()), zap.String("resource_version", meta.GetResourceVersion()),
			zap.String("problem", p))
	}
	if w.settings.DisableEvents {
		return
	}
	now := metav1.Now()
	host, _ := os.Hostname()
	event := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: meta.GetName() + ".", Namespace: meta.GetNamespace()},
		InvolvedObject: corev1.ObjectReference{
			Kind: kind, APIVersion: apiVersion, Namespace: meta.GetNamespace(), Name: meta.GetName(),
			UID: meta.GetUID(), ResourceVersion: meta.GetResourceVersion(),
		},
		Reason:         "InvalidConfig",
		Message:        truncate("skipped by caddy-istio: "+strings.Join(problems, "; "), 1024),
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "caddy-istio", Host: host},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := w.kube.CoreV1().Events(event.Namespace).Create(ctx, event, metav1.CreateOptions{}); err != nil {
			w.logger.Warn("recording an event", zap.String("object", key), zap.Error(err))
		}
	}()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Interface guards
var _ caddy.Destructor = (*watcher)(nil)
