package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// adapt runs `caddy adapt --adapter istio --config file --validate` (which
// also provisions every module of the result) and returns its exit code and
// stderr. The exit code is -1 when the command could not run to its end.
func adapt(t *testing.T, file string) (exitCode int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, adaptBin, "adapt", "--adapter", "istio", "--config", file, "--validate")
	cmd.Env = childEnv(t.TempDir())
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("caddy adapt %s: no answer within %v", file, commandTimeout)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, errBuf.String()
	case errors.As(err, &exitErr) && exitErr.Exited():
		return exitErr.ExitCode(), errBuf.String()
	default:
		t.Fatalf("caddy adapt %s: %v\n%s", file, err, errBuf.String())
		return -1, ""
	}
}

// Every file of the Istio samples corpus is valid Istio configuration, so
// `caddy adapt --validate` accepts each one as it is (warnings allowed).
func TestAdaptValidateSamples(t *testing.T) {
	requireBinaries(t)
	root := filepath.Join(corpusDir, "istio-samples")
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found %d sample files under %s, want the whole corpus", len(files), root)
	}
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			t.Parallel()
			if code, stderr := adapt(t, file); code != 0 {
				t.Errorf("caddy adapt --validate exited %d:\n%s", code, stderr)
			}
		})
	}
}

// invalidDocument is one document of an istio-invalid/*.yaml file.
type invalidDocument struct {
	Case string // from its "# case:" comment
	Text string
	Ref  string // "Kind namespace/name", as the adapter's messages name it
}

var caseComment = regexp.MustCompile(`(?m)^# case:[ \t]*(\S+)`)

// invalidDocuments splits the files of istio-invalid into their documents.
func invalidDocuments(t *testing.T) []invalidDocument {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "istio-invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no istio-invalid/*.yaml under %s: %v", corpusDir, err)
	}
	sort.Strings(files)
	var docs []invalidDocument
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, text := range documentSeparator.Split(string(data), -1) {
			if strings.TrimSpace(text) == "" {
				continue
			}
			m := caseComment.FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("%s: document %d has no '# case:' comment", file, i+1)
			}
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			// Only the envelope: the spec may be deliberately malformed.
			if err := yaml.Unmarshal([]byte(text), &head); err != nil {
				t.Fatalf("%s: case %s: %v", file, m[1], err)
			}
			ns := head.Metadata.Namespace
			if ns == "" {
				ns = "default"
			}
			docs = append(docs, invalidDocument{
				Case: m[1],
				Text: text,
				Ref:  fmt.Sprintf("%s %s/%s", head.Kind, ns, head.Metadata.Name),
			})
		}
	}
	return docs
}

// Every document of istio-invalid, written alone to a file, is rejected by
// `caddy adapt`: non-zero exit and one stderr line that names the file,
// "document 1", the resource "(Kind namespace/name)" and a field path under
// "spec." (or metadata.name when the name itself is invalid).
func TestAdaptRejectsInvalid(t *testing.T) {
	requireBinaries(t)
	docs := invalidDocuments(t)
	if len(docs) < 100 {
		t.Fatalf("found %d invalid documents, want the whole corpus", len(docs))
	}
	dir := t.TempDir()
	seen := map[string]bool{}
	for _, doc := range docs {
		if seen[doc.Case] {
			t.Fatalf("case %s appears twice", doc.Case)
		}
		seen[doc.Case] = true
		t.Run(doc.Case, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(dir, doc.Case+".yaml")
			if err := os.WriteFile(file, []byte(doc.Text), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stderr := adapt(t, file)
			if code == 0 {
				t.Fatalf("caddy adapt accepted invalid %s:\n%s", doc.Ref, doc.Text)
			}
			// The field path comes right after the resource: spec.<field>,
			// or metadata.name for the one case about the name itself.
			resource := "(" + doc.Ref + "): "
			for _, line := range strings.Split(stderr, "\n") {
				if containsAll(line, []string{file, "document 1"}) &&
					(strings.Contains(line, resource+"spec.") || strings.Contains(line, resource+"metadata.name: ")) {
					return
				}
			}
			t.Errorf("exit %d, but no stderr line names %s, document 1 and %q followed by a field path spec.*:\n%s",
				code, file, resource, stderr)
		})
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// The demo's configuration (examples/bookinfo/mesh.yaml) stays valid.
func TestAdaptValidateDemo(t *testing.T) {
	requireBinaries(t)
	file := filepath.Join(repoRoot, "examples", "bookinfo", "mesh.yaml")
	if code, stderr := adapt(t, file); code != 0 {
		t.Errorf("caddy adapt --validate %s exited %d:\n%s", file, code, stderr)
	}
}
