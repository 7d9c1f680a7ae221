package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// istioModule is the istio.io/istio version whose CRDs are installed: the
// newest the module proxy serves here, matching istio.io/api v1.32.0.
const istioModule = "istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad"

const namespace = "default"

var repoRoot = func() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// goModDir is the directory of a module version in the module cache,
// downloading it if needed.
func goModDir(t *testing.T, mod string) string {
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %s", mod, out)
	}
	return info.Dir
}

// freeAddr is a free loopback address.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// backend answers every request with its name.
func backend(t *testing.T, name string) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// gateway is one Caddy process following the API server.
type gateway struct {
	name  string
	cmd   *exec.Cmd
	admin string
	mesh  string
	log   *bytes.Buffer
	mu    *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startGateway(t *testing.T, caddyBin, name, kubeconfig string) *gateway {
	g := &gateway{name: name, admin: freeAddr(t), mesh: freeAddr(t), log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	loader := map[string]any{
		"module":      "istio_kube",
		"kubeconfig":  kubeconfig,
		"namespaces":  []string{namespace},
		"mesh_listen": g.mesh,
		"base":        map[string]any{"admin": map[string]any{"listen": g.admin}},
	}
	boot, _ := json.Marshal(map[string]any{
		"admin": map[string]any{
			"listen": g.admin,
			"config": map[string]any{"load_delay": "100ms", "load": loader, "persist": false},
		},
	})
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "boot.json")
	if err := os.WriteFile(cfgPath, boot, 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(caddyBin, "run", "--config", cfgPath)
	g.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	g.cmd.Stdout = lockedWriter{g.mu, g.log}
	g.cmd.Stderr = lockedWriter{g.mu, g.log}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { g.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			g.cmd.Process.Kill()
		}
		if t.Failed() {
			g.mu.Lock()
			t.Logf("%s log:\n%s", g.name, tail(g.log.String(), 8000))
			g.mu.Unlock()
		}
	})
	return g
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// get sends a request for reviews to the gateway's mesh listener and
// returns the backend's name.
func (g *gateway) get() (string, error) { return g.getHost("reviews:9080") }

// getHost sends a request for host to the gateway's mesh listener and
// returns the backend's name.
func (g *gateway) getHost(host string) (string, error) {
	req, _ := http.NewRequest("GET", "http://"+g.mesh+"/", nil)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

// apps is the running config's apps, from the admin API.
func (g *gateway) apps() string {
	resp, err := client.Get("http://" + g.admin + "/config/apps")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// configObject is one object of the admin API's /istio/config.
type configObject struct {
	Kind            string   `json:"kind"`
	Namespace       string   `json:"namespace"`
	Name            string   `json:"name"`
	ResourceVersion string   `json:"resource_version"`
	Problems        []string `json:"problems"`
	RejectedVersion string   `json:"rejected_version"`
}

// configObject returns the object of /istio/config with that kind and
// name in the test namespace.
func (g *gateway) configObject(kind, name string) (configObject, bool) {
	resp, err := client.Get("http://" + g.admin + "/istio/config")
	if err != nil {
		return configObject{}, false
	}
	defer resp.Body.Close()
	var config struct {
		Source  string         `json:"source"`
		Objects []configObject `json:"objects"`
	}
	if json.NewDecoder(resp.Body).Decode(&config) != nil || config.Source != "kubernetes" {
		return configObject{}, false
	}
	for _, o := range config.Objects {
		if o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o, true
		}
	}
	return configObject{}, false
}

// meshApps is apps with the gateway's own mesh listener address replaced,
// to compare gateways.
func (g *gateway) meshApps() string {
	return strings.ReplaceAll(g.apps(), g.mesh, "MESH")
}

// rssKiB is the process's resident set size.
func (g *gateway) rssKiB(t *testing.T) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// share is the share of each backend name in n requests.
func (g *gateway) share(t *testing.T, n int) map[string]float64 {
	counts := map[string]float64{}
	for i := 0; i < n; i++ {
		name, err := g.get()
		if err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		counts[name]++
	}
	for k := range counts {
		counts[k] /= float64(n)
	}
	return counts
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func reviewsVS(weights ...int32) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: namespace}}
	vs.Spec.Hosts = []string{"reviews"}
	route := &networking.HTTPRoute{}
	for i, w := range weights {
		route.Route = append(route.Route, &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: "reviews", Subset: []string{"v1", "v2"}[i]}, Weight: w,
		})
	}
	vs.Spec.Http = []*networking.HTTPRoute{route}
	return vs
}

// apiServerProcess finds the kube-apiserver envtest started, by its
// binary and secure port.
func apiServerProcess(t *testing.T, bin, port string) (pid int, args []string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(data) == 0 {
			continue
		}
		a := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if filepath.Base(a[0]) == filepath.Base(bin) && strings.Contains(string(data), port) {
			return p, a
		}
	}
	t.Fatal("kube-apiserver process not found")
	return 0, nil
}

func TestGatewaysFollowAPIServer(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(repoRoot, ".cache", "kube", "bin")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			t.Skipf("%s not built (integration/kube/build-binaries.sh): %v", b, err)
		}
	}
	os.Setenv("KUBEBUILDER_ASSETS", assets)

	caddyBin := filepath.Join(repoRoot, ".cache", "kube", "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "./xcaddy")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building caddy: %v\n%s", err, out)
	}

	crds := filepath.Join(goModDir(t, istioModule), "manifests", "charts", "base", "files", "crd-all.gen.yaml")
	env := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{crds}}}
	restCfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting etcd and kube-apiserver: %v", err)
	}
	var restarted *exec.Cmd
	t.Cleanup(func() {
		if restarted != nil {
			restarted.Process.Kill()
			restarted.Wait()
		}
		env.Stop()
	})

	user, err := env.AddUser(envtest.User{Name: "caddy", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigData, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigData, 0o600); err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(restCfg)
	ic := istioclient.NewForConfigOrDie(rest.CopyConfig(restCfg))
	ctx := context.Background()

	// bookinfo's reviews: a Service, two WorkloadEntries on local
	// backends, subsets by version, and the 90/10 split.
	v1, v2 := backend(t, "v1"), backend(t, "v2")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(kube.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "reviews"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}},
		},
	}, metav1.CreateOptions{}))
	for version, port := range map[string]int{"v1": v1, "v2": v2} {
		we := &networkingv1.WorkloadEntry{ObjectMeta: metav1.ObjectMeta{Name: "reviews-" + version, Namespace: namespace}}
		we.Spec.Address = "127.0.0.1"
		we.Spec.Labels = map[string]string{"app": "reviews", "version": version}
		we.Spec.Ports = map[string]uint32{"http": uint32(port)}
		must(ic.NetworkingV1().WorkloadEntries(namespace).Create(ctx, we, metav1.CreateOptions{}))
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: namespace}}
	dr.Spec.Host = "reviews"
	dr.Spec.Subsets = []*networking.Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}},
	}
	must(ic.NetworkingV1().DestinationRules(namespace).Create(ctx, dr, metav1.CreateOptions{}))
	must(ic.NetworkingV1().VirtualServices(namespace).Create(ctx, reviewsVS(90, 10), metav1.CreateOptions{}))
	// ratings: endpoints from an EndpointSlice (envtest runs no
	// controller-manager, so the test writes the slice the EndpointSlice
	// controller would). The API server refuses loopback addresses in
	// slices: the test checks the config, with a documentation address
	// (192.0.2.0/24) it never connects to.
	must(kube.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ratings", Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "ratings"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}},
		},
	}, metav1.CreateOptions{}))
	portName, port, ready, notReady := "http", int32(19080), true, false
	must(kube.DiscoveryV1().EndpointSlices(namespace).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "ratings-x1", Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: "ratings"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"192.0.2.11"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
		},
	}, metav1.CreateOptions{}))

	gateways := []*gateway{startGateway(t, caddyBin, "gateway-a", kubeconfig), startGateway(t, caddyBin, "gateway-b", kubeconfig)}
	for _, g := range gateways {
		waitFor(t, 60*time.Second, g.name+" serves reviews", func() bool { _, err := g.get(); return err == nil })
	}

	t.Run("both gateways route identically", func(t *testing.T) {
		a, b := gateways[0].meshApps(), gateways[1].meshApps()
		if a != b || !strings.Contains(a, `"weight":90`) {
			t.Fatalf("configs differ or lack the 90/10 split:\n%s\n%s", a, b)
		}
		for _, g := range gateways {
			if s := g.share(t, 200); s["v1"] < 0.8 || s["v2"] < 0.02 {
				t.Errorf("%s: shares %v, want about 90/10", g.name, s)
			}
			if apps := g.apps(); !strings.Contains(apps, `"address":"192.0.2.10","labels":{"app":"ratings"},"name":"ratings-x1-0","namespace":"default","ports":{"http":19080}`) || strings.Contains(apps, "192.0.2.11") {
				t.Errorf("%s: ratings should have the ready EndpointSlice endpoint only:\n%s", g.name, apps)
			}
		}
	})

	t.Run("90/10 to 50/50 under load", func(t *testing.T) {
		var failures, requests atomic.Int64
		var lastErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, g := range gateways {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						requests.Add(1)
						if _, err := g.get(); err != nil {
							failures.Add(1)
							lastErr.Store(err.Error())
						}
					}
				}()
			}
		}
		time.Sleep(300 * time.Millisecond)
		vs, err := ic.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vs.Spec.Http = reviewsVS(50, 50).Spec.Http
		applied := time.Now()
		if _, err := ic.NetworkingV1().VirtualServices(namespace).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		var converge [2]time.Duration
		var wgc sync.WaitGroup
		for i, g := range gateways {
			wgc.Add(1)
			go func() {
				defer wgc.Done()
				for time.Since(applied) < 20*time.Second {
					if strings.Contains(g.apps(), `"weight":50`) {
						converge[i] = time.Since(applied)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		wgc.Wait()
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()
		for i, g := range gateways {
			if converge[i] == 0 {
				t.Errorf("%s did not converge", g.name)
			}
			t.Logf("FIGURE %s: apply to traffic shift (running config has 50/50): %v", g.name, converge[i].Round(time.Millisecond))
			if converge[i] > 2*time.Second {
				// Reported, not failed: CI shares two cores.
				t.Logf("%s took more than 2 s", g.name)
			}
		}
		t.Logf("FIGURE requests under load: %d, failed: %d", requests.Load(), failures.Load())
		if failures.Load() != 0 {
			t.Errorf("%d of %d requests failed during the reload, last: %v", failures.Load(), requests.Load(), lastErr.Load())
		}
		for _, g := range gateways {
			if s := g.share(t, 200); s["v1"] < 0.3 || s["v2"] < 0.3 {
				t.Errorf("%s: shares %v, want about 50/50", g.name, s)
			}
		}
	})

	t.Run("invalid VirtualService keeps the last good routes", func(t *testing.T) {
		vs, err := ic.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		before := []string{gateways[0].apps(), gateways[1].apps()}
		goodVersion := vs.ResourceVersion
		// Accepted by the CRD schema, refused by Istio's validation.
		vs.Spec.Hosts = []string{"reviews", "foo*.example.com"}
		vs.Spec.Http = reviewsVS(0, 100).Spec.Http
		rejected, err := ic.NetworkingV1().VirtualServices(namespace).Update(ctx, vs, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// The admin API names the version that serves and the one refused.
		var shown configObject
		waitFor(t, 20*time.Second, "/istio/config shows the rejected VirtualService version", func() bool {
			shown, _ = gateways[0].configObject("VirtualService", "reviews")
			return shown.RejectedVersion == rejected.ResourceVersion
		})
		if shown.ResourceVersion != goodVersion || !strings.Contains(strings.Join(shown.Problems, " "), "spec.hosts[1]") {
			t.Errorf("/istio/config VirtualService reviews: %+v, want resourceVersion %s, problems naming spec.hosts[1]", shown, goodVersion)
		}
		if o, ok := gateways[0].configObject("DestinationRule", "reviews"); !ok || o.ResourceVersion == "" || len(o.Problems) > 0 {
			t.Errorf("/istio/config DestinationRule reviews: %+v, %v", o, ok)
		}
		waitFor(t, 20*time.Second, "an InvalidConfig event on the VirtualService", func() bool {
			events, err := kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=reviews,reason=InvalidConfig"})
			return err == nil && len(events.Items) >= 1 && strings.Contains(events.Items[0].Message, "spec.hosts[1]")
		})
		time.Sleep(500 * time.Millisecond)
		for i, g := range gateways {
			if got := g.apps(); got != before[i] {
				t.Errorf("%s: running config changed after an invalid update", g.name)
			}
			if s := g.share(t, 100); s["v1"] < 0.3 || s["v2"] < 0.3 {
				t.Errorf("%s: shares %v, want the last good 50/50", g.name, s)
			}
			g.mu.Lock()
			logged := strings.Contains(g.log.String(), "skipping invalid object") && strings.Contains(g.log.String(), "spec.hosts[1]")
			g.mu.Unlock()
			if !logged {
				t.Errorf("%s: no log line naming spec.hosts[1]", g.name)
			}
		}
		// Repair it for the next steps.
		vs, err = ic.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vs.Spec.Hosts = []string{"reviews"}
		vs.Spec.Http = reviewsVS(50, 50).Spec.Http
		if _, err := ic.NetworkingV1().VirtualServices(namespace).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("API server down and back", func(t *testing.T) {
		bin := filepath.Join(assets, "kube-apiserver")
		pid, args := apiServerProcess(t, bin, restCfg.Host[strings.LastIndex(restCfg.Host, ":")+1:])
		proc, _ := os.FindProcess(pid)
		proc.Signal(syscall.SIGTERM)
		hostPort := strings.TrimPrefix(restCfg.Host, "https://")
		// envtest reaps its process only on Stop: wait for the port, not the pid.
		waitFor(t, 30*time.Second, "kube-apiserver exits", func() bool {
			c, err := net.DialTimeout("tcp", hostPort, time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
		for _, g := range gateways {
			if s := g.share(t, 100); s["v1"] < 0.3 || s["v2"] < 0.3 {
				t.Errorf("%s with the API server down: shares %v, want 50/50", g.name, s)
			}
		}
		time.Sleep(2 * time.Second)
		for _, g := range gateways {
			if _, err := g.get(); err != nil {
				t.Errorf("%s with the API server down: %v", g.name, err)
			}
		}
		// Same binary, flags, certificates and etcd: the gateways'
		// kubeconfig stays valid.
		restarted = exec.Command(args[0], args[1:]...)
		if err := restarted.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "kube-apiserver answers again", func() bool {
			_, err := kube.Discovery().ServerVersion()
			return err == nil
		})
		var vs *networkingv1.VirtualService
		waitFor(t, 30*time.Second, "the VirtualService can be read", func() bool {
			var err error
			vs, err = ic.NetworkingV1().VirtualServices(namespace).Get(ctx, "reviews", metav1.GetOptions{})
			return err == nil
		})
		vs.Spec.Http = reviewsVS(0, 100).Spec.Http
		if _, err := ic.NetworkingV1().VirtualServices(namespace).Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, g := range gateways {
			d := waitFor(t, 60*time.Second, g.name+" resyncs to 0/100", func() bool {
				name, err := g.get()
				return err == nil && name == "v2" && strings.Contains(g.apps(), `"weight":100`)
			})
			t.Logf("FIGURE %s: resync after the API server returned: %v", g.name, d.Round(time.Millisecond))
		}
	})

	t.Run("memory per 1000 objects", func(t *testing.T) {
		before := []int{gateways[0].rssKiB(t), gateways[1].rssKiB(t)}
		const n = 500
		created := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		sem := make(chan struct{}, 16)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				host := fmt.Sprintf("svc-%d.example.com", i)
				se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("se-%d", i), Namespace: namespace}}
				se.Spec.Hosts = []string{host}
				se.Spec.Ports = []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}}
				se.Spec.Resolution = networking.ServiceEntry_STATIC
				se.Spec.Endpoints = []*networking.WorkloadEntry{{Address: "127.0.0.1", Ports: map[string]uint32{"http": uint32(v1)}}}
				if _, err := ic.NetworkingV1().ServiceEntries(namespace).Create(ctx, se, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
				vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("vs-%d", i), Namespace: namespace}}
				vs.Spec.Hosts = []string{host}
				vs.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: host}}}}}
				if _, err := ic.NetworkingV1().VirtualServices(namespace).Create(ctx, vs, metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		last := fmt.Sprintf("svc-%d.example.com", n-1)
		for _, g := range gateways {
			d := waitFor(t, 90*time.Second, g.name+" has the 1,000 objects", func() bool {
				return strings.Contains(g.apps(), last) && strings.Contains(g.apps(), "svc-0.example.com")
			})
			_ = d
		}
		t.Logf("FIGURE first create of 1,000 objects to both configs running all of them: %v", time.Since(created).Round(time.Millisecond))
		time.Sleep(time.Second)
		for i, g := range gateways {
			after := g.rssKiB(t)
			t.Logf("FIGURE %s: RSS %d KiB before, %d KiB with 1,000 more objects (+%d KiB)", g.name, before[i], after, after-before[i])
			if _, err := g.get(); err != nil {
				t.Errorf("%s: %v", g.name, err)
			}
		}
	})

	t.Run("one watcher per gateway across reloads", func(t *testing.T) {
		// Were the watcher not shared by the configs it applies, each
		// applied config would start a new one, which would apply again:
		// reloads would never stop.
		time.Sleep(time.Second)
		for _, g := range gateways {
			g.mu.Lock()
			reloads := strings.Count(g.log.String(), "applied config from the API server")
			g.mu.Unlock()
			t.Logf("FIGURE %s: %d reloads", g.name, reloads)
			if reloads == 0 || reloads > 40 {
				t.Errorf("%s: %d reloads", g.name, reloads)
			}
		}
	})
}
