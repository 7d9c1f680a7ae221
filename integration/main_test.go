package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Set by TestMain.
var (
	repoRoot   string // the caddy-istio module root
	corpusDir  string // ../shared/corpus beside the repository
	caddyBin   string // caddy built from ./xcaddy, with -race when the tests run with it
	adaptBin   string // caddy built from ./xcaddy without -race, for `caddy adapt`
	backendBin string // examples/bookinfo/backend
	buildErr   error  // why the binaries are missing, if they are
)

// buildTimeout bounds each `go build`; a cold build of Caddy with -race on
// two cores takes a few minutes, a warm one seconds.
const buildTimeout = 10 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() {
		buildErr = setup()
	}
	os.Exit(m.Run())
}

// setup locates the repository and the corpus and builds both binaries once
// into .cache/bin (git-ignored). Go's build cache makes rebuilds cheap.
func setup() error {
	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("repository root not found above %s: %v", root, err)
	}
	repoRoot = root
	corpusDir = filepath.Join(root, "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(corpusDir, "istio-samples")); err != nil {
		return fmt.Errorf("the Istio corpus must be at %s (../shared/corpus from the repository): %v", corpusDir, err)
	}

	binDir := filepath.Join(root, ".cache", "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	adaptBin = filepath.Join(binDir, "caddy")
	caddyBin = adaptBin
	backendBin = filepath.Join(binDir, "bookinfo-backend")
	if err := goBuild(root, adaptBin, "./xcaddy"); err != nil {
		return err
	}
	// A race-enabled test run serves traffic with a race-enabled caddy, so
	// data races in the modules under real traffic fail the tests too (see
	// startCaddy). `caddy adapt` keeps the plain build: it is one-shot and
	// single-threaded, and the race runtime would triple the cost of its
	// many short runs.
	if raceEnabled {
		caddyBin = filepath.Join(binDir, "caddy-race")
		if err := goBuild(root, caddyBin, "./xcaddy", "-race"); err != nil {
			return err
		}
	}
	return goBuild(root, backendBin, "./examples/bookinfo/backend")
}

func goBuild(dir, output, pkg string, flags ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", output, pkg)
	var firstErr error
	// One retry: a cold -race build running beside other builds once
	// failed with "could not import sync (open : no such file or
	// directory)" and succeeded when run again.
	for attempt := 0; attempt < 2; attempt++ {
		cmd := exec.CommandContext(ctx, goTool(), args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err == nil {
			if firstErr != nil {
				fmt.Fprintf(os.Stderr, "integration: go build succeeded on retry after: %v\n", firstErr)
			}
			return nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return firstErr
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// requireBinaries skips under -short and fails when the build failed.
func requireBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration tests build and run the caddy binary; skipped with -short")
	}
	if buildErr != nil {
		t.Fatalf("setup: %v", buildErr)
	}
}
