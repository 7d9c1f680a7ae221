package istiokube

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func TestMain(m *testing.M) {
	// istio's fake clientset cannot stream the initial list of a watch.
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(m.Run())
}

func objectMeta(name, rv string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "bookinfo", ResourceVersion: rv}
}

func virtualService(rv string, weights ...int32) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: objectMeta("reviews", rv)}
	vs.Spec.Hosts = []string{"reviews"}
	route := &networking.HTTPRoute{}
	for i, w := range weights {
		subset := []string{"v1", "v2", "v3"}[i]
		route.Route = append(route.Route, &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: "reviews", Subset: subset}, Weight: w,
		})
	}
	vs.Spec.Http = []*networking.HTTPRoute{route}
	return vs
}

func ptr[T any](v T) *T { return &v }

// newTestWatcher is a watcher over fake clients holding objs, its caches
// synced.
func newTestWatcher(t *testing.T, kubeObjs []any, istioObjs []any) (*watcher, *kubefake.Clientset) {
	t.Helper()
	kube := kubefake.NewClientset()
	ic := istiofake.NewSimpleClientset()
	ctx := context.Background()
	for _, o := range kubeObjs {
		var err error
		switch o := o.(type) {
		case *corev1.Service:
			_, err = kube.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = kube.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range istioObjs {
		var err error
		switch o := o.(type) {
		case *networkingv1.VirtualService:
			_, err = ic.NetworkingV1().VirtualServices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.DestinationRule:
			_, err = ic.NetworkingV1().DestinationRules(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	w := newWatcherWithClients(Loader{Debounce: 100 * 1e6}, zap.NewNop(), kube, ic)
	t.Cleanup(func() { _ = w.Destruct() })
	w.startInformers()
	syncs := []cache.InformerSynced{}
	for _, s := range w.informers {
		syncs = append(syncs, s.informer.HasSynced)
	}
	stop := make(chan struct{})
	time.AfterFunc(10*time.Second, func() { close(stop) })
	if !cache.WaitForCacheSync(stop, syncs...) {
		t.Fatal("caches did not sync")
	}
	return w, kube
}

func TestBuild(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: objectMeta("reviews", "1"),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "reviews"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}},
		},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews-abc", Namespace: "bookinfo",
			Labels: map[string]string{discoveryv1.LabelServiceName: "reviews"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(18080))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"127.0.0.21"}},
			{Addresses: []string{"127.0.0.22"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
		},
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: objectMeta("reviews", "1")}
	dr.Spec.Host = "reviews"
	dr.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"app": "reviews"}}, {Name: "v2", Labels: map[string]string{"app": "reviews"}}}

	w, _ := newTestWatcher(t, []any{svc, slice}, []any{virtualService("1", 90, 10), dr})
	cfgJSON, status, err := w.build()
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(cfgJSON)
	for _, want := range []string{
		`"127.0.0.21"`, // the ready endpoint
		`"reviews.bookinfo.svc.cluster.local"`,
		`"module":"istio_kube"`, // the loader stays in the config
		`"persist":false`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "127.0.0.22") {
		t.Errorf("config has the endpoint that is not ready")
	}
	var parsed map[string]any
	if err := json.Unmarshal(cfgJSON, &parsed); err != nil {
		t.Fatal(err)
	}
	if len(status) != 4 {
		t.Errorf("status has %d objects, want 4: %+v", len(status), status)
	}
	for _, s := range status {
		if len(s.Problems) > 0 {
			t.Errorf("unexpected problems: %+v", s)
		}
	}
}

func TestInvalidUpdateKeepsLastGoodVersion(t *testing.T) {
	tests := []struct {
		name        string
		first, next *networkingv1.VirtualService
		wantInConf  string
		wantVersion string
	}{
		{
			name:        "invalid update keeps the valid version",
			first:       virtualService("1", 90, 10),
			next:        virtualService("2", -10, 110),
			wantInConf:  `90`,
			wantVersion: "1",
		},
		{
			name:        "valid update replaces",
			first:       virtualService("1", 90, 10),
			next:        virtualService("2", 50, 50),
			wantInConf:  `50`,
			wantVersion: "2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, kube := newTestWatcher(t, nil, nil)
			conf := func(vs *networkingv1.VirtualService) (string, []ObjectStatus) {
				cfgJSON, status, err := w.build()
				_ = vs
				if err != nil {
					t.Fatal(err)
				}
				return string(cfgJSON), status
			}
			store := w.informers[0].informer.GetStore()
			if err := store.Add(tt.first); err != nil {
				t.Fatal(err)
			}
			conf(tt.first)
			if err := store.Update(tt.next); err != nil {
				t.Fatal(err)
			}
			cfg, status := conf(tt.next)
			if !strings.Contains(cfg, `"weight":`+tt.wantInConf) {
				t.Errorf("config lacks weight %s:\n%s", tt.wantInConf, cfg)
			}
			if len(status) != 1 || status[0].ResourceVersion != tt.wantVersion {
				t.Fatalf("status %+v, want resourceVersion %s", status, tt.wantVersion)
			}
			if tt.wantVersion == "1" {
				if status[0].RejectedVersion != "2" || !strings.Contains(strings.Join(status[0].Problems, "\n"), "spec.http[0].route[0].weight") {
					t.Errorf("status %+v should name the rejected version and the field", status[0])
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					events, err := kube.CoreV1().Events("bookinfo").List(context.Background(), metav1.ListOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if len(events.Items) == 1 {
						ev := events.Items[0]
						if ev.InvolvedObject.Kind != "VirtualService" || ev.Reason != "InvalidConfig" || !strings.Contains(ev.Message, "weight") {
							t.Errorf("event %+v", ev)
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d events, want 1", len(events.Items))
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

func TestAssembleKeepsBase(t *testing.T) {
	w := newTestWatcherSettings(Loader{
		Debounce:   caddy.Duration(100 * time.Millisecond),
		Namespaces: []string{"bookinfo"},
		Base:       json.RawMessage(`{"admin":{"listen":"127.0.0.1:2999"},"logging":{"logs":{"default":{"level":"WARN"}}},"apps":{"http":{"servers":{}},"pki":{},"events":{}}}`),
	})
	out, err := w.assemble(&caddy.Config{AppsRaw: caddy.ModuleMap{"istio": json.RawMessage(`{"services":[]}`)}})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Admin struct {
			Listen string `json:"listen"`
			Config struct {
				Load      json.RawMessage `json:"load"`
				LoadDelay int64           `json:"load_delay"`
				Persist   bool            `json:"persist"`
			} `json:"config"`
		} `json:"admin"`
		Logging json.RawMessage            `json:"logging"`
		Apps    map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Listen != "127.0.0.1:2999" || cfg.Logging == nil {
		t.Errorf("base admin or logging lost: %s", out)
	}
	if !bytes.HasPrefix(cfg.Admin.Config.Load, []byte(`{"module":"istio_kube",`)) || cfg.Admin.Config.LoadDelay != int64(100*time.Millisecond) || cfg.Admin.Config.Persist {
		t.Errorf("admin.config: %s", out)
	}
	for name, want := range map[string]bool{"istio": true, "events": true, "http": false, "pki": false} {
		if _, ok := cfg.Apps[name]; ok != want {
			t.Errorf("app %s present %v, want %v: %s", name, ok, want, out)
		}
	}
	// The loader in the applied config has the settings of the watcher,
	// so that its Provision finds the same watcher.
	var again Loader
	if err := json.Unmarshal(bytes.Replace(cfg.Admin.Config.Load, []byte(`"module":"istio_kube",`), nil, 1), &again); err != nil {
		t.Fatal(err)
	}
	key1, _ := json.Marshal(w.settings)
	key2, _ := json.Marshal(again)
	if !bytes.Equal(key1, key2) {
		t.Errorf("loader settings changed on the way: %s != %s", key1, key2)
	}
}

func TestRunningObjects(t *testing.T) {
	w := newTestWatcherSettings(Loader{})
	w.setRunning([]ObjectStatus{{Kind: "VirtualService", Namespace: "b", Name: "r", ResourceVersion: "7"}, {Kind: "Service", Namespace: "b", Name: "r", ResourceVersion: "3"}})
	if _, loaded := watchers.LoadOrStore("test-running-objects", w); loaded {
		t.Fatal("key in use")
	}
	t.Cleanup(func() { _, _ = watchers.Delete("test-running-objects") })
	got := RunningObjects()
	if len(got) != 2 || got[0].Kind != "Service" || got[1].ResourceVersion != "7" {
		t.Errorf("RunningObjects() = %+v", got)
	}
}

func newTestWatcherSettings(settings Loader) *watcher {
	return newWatcherWithClients(settings, zap.NewNop(), kubefake.NewClientset(), istiofake.NewSimpleClientset())
}
