// Command scale measures how caddy-istio scales with the size of the mesh
// configuration: it generates N VirtualServices and times
// `caddy adapt --adapter istio` on them.
//
//	scale gen -n 10000 -o mesh.yaml          # write one generated config
//	scale adapt -caddy .cache/bin/caddy -counts 100,1000,10000 -reps 3 -json out.json
//
// Each generated host i is a service of its own: a ServiceEntry for
// h<i>.bench (port -port, MESH_INTERNAL, STATIC) and a VirtualService for it
// with a header match (x-bench: "1") split 90/10 between the two shared
// services backend-v1.bench and backend-v2.bench (the bench backend's two
// ports), then a default route to backend-v1.bench. A Sidecar binds the mesh
// listener to 127.0.0.1:-port, so `caddy run` on a generated config serves
// every host there (bench/scale.sh uses that for the request routing
// figures).
//
// For adapt, the child's wall time and maximum RSS (from its rusage) are the
// medians over -reps runs; each run's output is checked to be a JSON Caddy
// config with the istio_route handler.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = runGen(os.Args[2:])
	case "adapt":
		err = runAdapt(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: scale gen -n N -o FILE | scale adapt -caddy BIN -counts 100,1000,10000 [-reps 3] [-json FILE]")
	os.Exit(2)
}

// generator parameters shared by both subcommands.
type genConfig struct {
	port     int    // mesh listener port and every service's port
	backends string // the two backend addresses, v1 and v2
}

func (g *genConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&g.port, "port", 18200, "mesh listener port (127.0.0.1) and the services' port")
	fs.StringVar(&g.backends, "backends", "127.0.0.1:18080,127.0.0.1:18090", "the v1 and v2 backend addresses")
}

// HostName is the generated name of host i; bench/scale.sh asks for the
// middle one.
func HostName(i int) string { return fmt.Sprintf("h%05d.bench", i) }

// generate writes the config of n VirtualServices.
func (g *genConfig) generate(n int) ([]byte, error) {
	backends := strings.Split(g.backends, ",")
	if len(backends) != 2 {
		return nil, fmt.Errorf("-backends wants two addresses, got %q", g.backends)
	}
	var b bytes.Buffer
	b.Grow(n * 1100)
	for v, addr := range backends {
		host, port, ok := strings.Cut(addr, ":")
		if !ok {
			return nil, fmt.Errorf("backend %q: want host:port", addr)
		}
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: backend-v%[1]d
spec:
  hosts:
  - backend-v%[1]d.bench
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: %[2]d
    name: http
    protocol: HTTP
  endpoints:
  - address: %[3]s
    ports:
      http: %[4]s
---
`, v+1, g.port, host, port)
	}
	for i := range n {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: h%05[1]d
spec:
  hosts:
  - %[2]s
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: %[3]d
    name: http
    protocol: HTTP
  endpoints:
  - address: 127.0.0.1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: h%05[1]d
spec:
  hosts:
  - %[2]s
  http:
  - match:
    - headers:
        x-bench:
          exact: "1"
    route:
    - destination:
        host: backend-v1.bench
      weight: 90
    - destination:
        host: backend-v2.bench
      weight: 10
  - route:
    - destination:
        host: backend-v1.bench
---
`, i, HostName(i), g.port)
	}
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: default
spec:
  egress:
  - port:
      number: %d
      protocol: HTTP
      name: http
    bind: 127.0.0.1
    hosts:
    - "./*"
`, g.port)
	return b.Bytes(), nil
}

func runGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	var g genConfig
	g.flags(fs)
	n := fs.Int("n", 100, "number of VirtualServices (and hosts)")
	out := fs.String("o", "", "output file (default stdout)")
	_ = fs.Parse(args)
	data, err := g.generate(*n)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(*out, data, 0o644)
}

// adaptRun is one `caddy adapt` of one generated config.
type adaptRun struct {
	WallS     float64 `json:"wall_s"`
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	MaxRSSMB  float64 `json:"max_rss_mb"`
	OutputKiB float64 `json:"output_kib"`
}

// adaptResult is the medians of one size.
type adaptResult struct {
	VirtualServices int        `json:"virtual_services"`
	Objects         int        `json:"objects"`
	InputKiB        float64    `json:"input_kib"`
	WallS           float64    `json:"wall_s"`
	CPUS            float64    `json:"cpu_s"`
	MaxRSSMB        float64    `json:"max_rss_mb"`
	OutputKiB       float64    `json:"output_kib"`
	StderrLines     int        `json:"stderr_lines"`
	Runs            []adaptRun `json:"runs"`
}

func runAdapt(args []string) error {
	fs := flag.NewFlagSet("adapt", flag.ExitOnError)
	var g genConfig
	g.flags(fs)
	caddyBin := fs.String("caddy", ".cache/bin/caddy", "the caddy binary")
	counts := fs.String("counts", "100,1000,10000", "numbers of VirtualServices")
	reps := fs.Int("reps", 3, "runs per size (medians)")
	dir := fs.String("dir", "", "where the generated configs go (default a temporary directory)")
	jsonOut := fs.String("json", "", "write the results as JSON to this file")
	_ = fs.Parse(args)

	work := *dir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "scale"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	var results []adaptResult
	for _, field := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n <= 0 {
			return fmt.Errorf("-counts: bad number %q", field)
		}
		data, err := g.generate(n)
		if err != nil {
			return err
		}
		file := filepath.Join(work, fmt.Sprintf("vs-%d.yaml", n))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
		res := adaptResult{VirtualServices: n, Objects: 2*n + 3, InputKiB: float64(len(data)) / 1024}
		for range *reps {
			run, lines, err := adaptOnce(*caddyBin, file)
			if err != nil {
				return fmt.Errorf("%d VirtualServices: %w", n, err)
			}
			res.Runs = append(res.Runs, run)
			res.StderrLines = lines
		}
		res.WallS = median(res.Runs, func(r adaptRun) float64 { return r.WallS })
		res.CPUS = median(res.Runs, func(r adaptRun) float64 { return r.UserS + r.SysS })
		res.MaxRSSMB = median(res.Runs, func(r adaptRun) float64 { return r.MaxRSSMB })
		res.OutputKiB = res.Runs[0].OutputKiB
		fmt.Fprintf(os.Stderr, "adapt %5d VirtualServices: wall %.3f s, cpu %.3f s, max RSS %.1f MB (medians of %d)\n",
			n, res.WallS, res.CPUS, res.MaxRSSMB, len(res.Runs))
		results = append(results, res)
	}

	fmt.Println("| VirtualServices | objects | input KiB | adapt wall s | CPU s | max RSS MB | output KiB | stderr lines |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Printf("| %d | %d | %.0f | %.3f | %.3f | %.1f | %.0f | %d |\n",
			r.VirtualServices, r.Objects, r.InputKiB, r.WallS, r.CPUS, r.MaxRSSMB, r.OutputKiB, r.StderrLines)
	}
	if *jsonOut != "" {
		data, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(*jsonOut, append(data, '\n'), 0o644)
	}
	return nil
}

// adaptOnce runs `caddy adapt --adapter istio --config file` and checks
// that the output is a Caddy config routing with istio_route. It returns
// the number of lines the adapter wrote to stderr (its warnings and logs).
func adaptOnce(caddyBin, file string) (adaptRun, int, error) {
	cmd := exec.Command(caddyBin, "adapt", "--adapter", "istio", "--config", file)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return adaptRun{}, 0, fmt.Errorf("%v: %s", err, tail(stderr.String(), 2000))
	}
	var cfg map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &cfg); err != nil {
		return adaptRun{}, 0, fmt.Errorf("adapt output is not JSON: %v", err)
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"istio_route"`)) {
		return adaptRun{}, 0, fmt.Errorf("adapt output has no istio_route handler")
	}
	run := adaptRun{WallS: wall.Seconds(), OutputKiB: float64(stdout.Len()) / 1024}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		run.UserS = time.Duration(ru.Utime.Nano()).Seconds()
		run.SysS = time.Duration(ru.Stime.Nano()).Seconds()
		run.MaxRSSMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return run, strings.Count(stderr.String(), "\n"), nil
}

func median(runs []adaptRun, f func(adaptRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
