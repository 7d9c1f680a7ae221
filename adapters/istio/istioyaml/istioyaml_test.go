package istioyaml

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// corpusDir returns /work/shared/corpus located from this package
// (../../../../shared/corpus), skipping the test if it is absent.
func corpusDir(t testing.TB, sub string) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Skip("cannot locate the test file")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "..", "..", "..", "shared", "corpus", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus folder absent: %v", err)
	}
	return dir
}

func corpusFiles(t testing.TB, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func decodeFile(t *testing.T, path string) ([]*Object, []Problem, []Problem) {
	t.Helper()
	return Decode(filepath.Base(path), readFile(t, path), Options{})
}

func TestDecodeSamples(t *testing.T) {
	dir := corpusDir(t, "istio-samples")
	files := corpusFiles(t, dir)
	if len(files) < 50 {
		t.Fatalf("found only %d sample files in %s", len(files), dir)
	}
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		t.Run(rel, func(t *testing.T) {
			objs, _, errs := decodeFile(t, path)
			for _, e := range errs {
				t.Errorf("unexpected error: %s", e.Error())
			}
			if len(objs) == 0 {
				t.Errorf("no objects decoded")
			}
			for _, o := range objs {
				if (o.Spec == nil) == (o.Service == nil) {
					t.Errorf("%s: want exactly one of Spec and Service", o.Ref())
				}
				if o.Name == "" || o.Namespace == "" || o.Doc < 1 || o.Line < 1 {
					t.Errorf("%s: incomplete location/name: %+v", o.Ref(), o)
				}
				if err := checkAgainstJSONPB(o); err != nil {
					t.Errorf("%s: %v", o.Ref(), err)
				}
			}
		})
	}
}

func countKinds(objs []*Object) map[string]int {
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.Kind]++
	}
	return counts
}

func TestDecodeSampleDetails(t *testing.T) {
	dir := corpusDir(t, "istio-samples")

	t.Run("bookinfo.yaml", func(t *testing.T) {
		objs, warnings, errs := decodeFile(t, filepath.Join(dir, "bookinfo/platform/kube/bookinfo.yaml"))
		if len(errs) != 0 {
			t.Fatalf("errors: %v", errs)
		}
		if got := countKinds(objs); got["Service"] != 4 || len(objs) != 4 {
			t.Fatalf("kinds = %v, want 4 Services only", got)
		}
		for _, o := range objs {
			svc := o.Service
			if len(svc.Ports) != 1 || svc.Ports[0].Port != 9080 || svc.Ports[0].Name != "http" || svc.Ports[0].Protocol != "TCP" {
				t.Errorf("%s ports = %+v, want one TCP port 9080 named http", o.Ref(), svc.Ports)
			}
			if svc.Selector["app"] != o.Name || o.Labels["app"] != o.Name {
				t.Errorf("%s selector = %v, labels = %v, want app=%s", o.Ref(), svc.Selector, o.Labels, o.Name)
			}
			if o.Namespace != "default" || o.APIVersion != "v1" {
				t.Errorf("%s: namespace %q apiVersion %q", o.Ref(), o.Namespace, o.APIVersion)
			}
		}
		// 4 ServiceAccounts and 6 Deployments are skipped with a warning each.
		if len(warnings) != 10 {
			t.Errorf("got %d warnings, want 10: %v", len(warnings), warnings)
		}
		for _, w := range warnings {
			if w.Doc == 0 || w.Line == 0 || w.Kind == "" || w.Name == "" || !strings.Contains(w.Message, "is not used by caddy-istio; skipped") {
				t.Errorf("bad warning: %+v", w)
			}
		}
		want := "bookinfo.yaml: document 3 (Deployment default/details-v1): kind Deployment (apiVersion apps/v1) is not used by caddy-istio; skipped"
		if len(warnings) > 1 && warnings[1].Error() != want {
			t.Errorf("warning = %q, want %q", warnings[1].Error(), want)
		}
	})

	t.Run("virtual-service-all-v1.yaml", func(t *testing.T) {
		objs, warnings, errs := decodeFile(t, filepath.Join(dir, "bookinfo/networking/virtual-service-all-v1.yaml"))
		if len(errs) != 0 || len(warnings) != 0 {
			t.Fatalf("errors %v warnings %v", errs, warnings)
		}
		if len(objs) != 4 {
			t.Fatalf("got %d objects, want 4", len(objs))
		}
		wantNames := []string{"productpage", "reviews", "ratings", "details"}
		for i, o := range objs {
			vs, ok := o.Spec.(*networking.VirtualService)
			if !ok || o.Kind != "VirtualService" || o.Name != wantNames[i] || o.Doc != i+1 {
				t.Fatalf("object %d = %s doc %d (%T)", i, o.Ref(), o.Doc, o.Spec)
			}
			if got := vs.GetHttp()[0].GetRoute()[0].GetDestination().GetSubset(); got != "v1" {
				t.Errorf("%s subset = %q, want v1", o.Ref(), got)
			}
		}
		if objs[0].Line != 1 || objs[1].Line <= objs[0].Line {
			t.Errorf("lines = %d, %d", objs[0].Line, objs[1].Line)
		}
	})

	t.Run("virtual-service-reviews-90-10.yaml", func(t *testing.T) {
		objs, _, errs := decodeFile(t, filepath.Join(dir, "bookinfo/networking/virtual-service-reviews-90-10.yaml"))
		if len(errs) != 0 || len(objs) != 1 {
			t.Fatalf("objs %d errs %v", len(objs), errs)
		}
		route := objs[0].Spec.(*networking.VirtualService).GetHttp()[0].GetRoute()
		if len(route) != 2 || route[0].GetWeight() != 90 || route[1].GetWeight() != 10 {
			t.Errorf("route = %v", route)
		}
	})

	t.Run("circuit breaker durations", func(t *testing.T) {
		objs, _, errs := decodeFile(t, filepath.Join(dir, "istio.io/tasks/traffic-management/circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml"))
		if len(errs) != 0 || len(objs) != 1 {
			t.Fatalf("objs %d errs %v", len(objs), errs)
		}
		od := objs[0].Spec.(*networking.DestinationRule).GetTrafficPolicy().GetOutlierDetection()
		if od.GetBaseEjectionTime().AsDuration().String() != "3m0s" || od.GetConsecutive_5XxErrors().GetValue() != 1 {
			t.Errorf("outlier detection = %v", od)
		}
	})

	t.Run("certmanager namespace", func(t *testing.T) {
		objs, _, errs := decodeFile(t, filepath.Join(dir, "bookinfo/networking/certmanager-gateway.yaml"))
		if len(errs) != 0 || len(objs) != 2 {
			t.Fatalf("objs %d errs %v", len(objs), errs)
		}
		for _, o := range objs {
			if o.Namespace != "istio-system" {
				t.Errorf("%s namespace = %q", o.Ref(), o.Namespace)
			}
		}
	})
}

// decodeCases reads the "# case:" names of a corpus file of invalid
// documents, in order.
func decodeCases(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []string
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "# case: "); ok {
			cases = append(cases, strings.TrimSpace(name))
		}
	}
	return cases
}

func TestDecodeInvalid(t *testing.T) {
	dir := corpusDir(t, "istio-invalid")
	path := filepath.Join(dir, "decode-invalid.yaml")
	cases := decodeCases(t, path)

	// Every decode case of expected-errors.jsonl is in the file.
	jsonl, err := os.ReadFile(filepath.Join(dir, "expected-errors.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	inJSONL := map[string]bool{}
	scanner := bufio.NewScanner(bytes.NewReader(jsonl))
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var rec struct{ Suite, Case string }
		if err := json.Unmarshal(scanner.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Suite == "decode" {
			inJSONL[rec.Case] = true
		}
	}
	for _, c := range cases {
		if !inJSONL[c] {
			t.Errorf("case %q not in expected-errors.jsonl", c)
		}
	}
	if len(inJSONL) != len(cases) {
		t.Errorf("jsonl has %d decode cases, file has %d", len(inJSONL), len(cases))
	}

	wantField := map[string]string{
		"decode-unknown-field":                            "spec.http[0].route[0].wieght",
		"decode-bad-enum":                                 "spec.trafficPolicy.tls.mode",
		"decode-duration-as-number":                       "spec.http[0].timeout",
		"decode-duration-bad-unit":                        "spec.http[0].timeout",
		"decode-yaml11-boolean-string":                    "spec.http[0].match[0].headers.x-canary.exact",
		"decode-number-for-string":                        "spec.http[0].match[0].headers.x-tenant.exact",
		"decode-fractional-weight":                        "spec.http[0].route[0].weight",
		"decode-negative-unsigned":                        "spec.http[0].route[0].destination.port.number",
		"decode-percentage-as-scalar":                     "spec.http[0].fault.abort.percentage",
		"decode-hosts-not-list":                           "spec.hosts",
		"decode-oneof-two-members (NOT caught by jsonpb)": "spec.http[0].match[0].uri",
	}
	wantMessage := map[string]string{
		"decode-unknown-field":                            `unknown field "wieght" in istio.networking.v1alpha3.HTTPRouteDestination`,
		"decode-bad-enum":                                 `unknown value "STRICT" for enum istio.networking.v1alpha3.ClientTLSSettings.TLSmode`,
		"decode-duration-as-number":                       `must be a string (google.protobuf.Duration, e.g. "5s"), got number 5`,
		"decode-duration-bad-unit":                        `bad Duration: time: unknown unit "sec" in duration "5sec"`,
		"decode-yaml11-boolean-string":                    `must be a string, got boolean (YAML 1.1 reads unquoted yes/no/on/off as booleans; quote it)`,
		"decode-number-for-string":                        `must be a string, got number 42`,
		"decode-fractional-weight":                        `must be an integer (int32), got number 33.3`,
		"decode-negative-unsigned":                        `number -1 is out of range for uint32`,
		"decode-percentage-as-scalar":                     `must be an object (istio.networking.v1alpha3.Percent), got number 50`,
		"decode-hosts-not-list":                           `must be an array, got string "reviews"`,
		"decode-oneof-two-members (NOT caught by jsonpb)": `only one of exact, prefix, regex may be set`,
	}

	objs, warnings, errs := decodeFile(t, path)
	if len(objs) != 0 || len(warnings) != 0 {
		t.Errorf("objs %d, warnings %v: want none", len(objs), warnings)
	}
	if len(errs) != len(cases) {
		t.Fatalf("got %d errors, want %d (one per document): %v", len(errs), len(cases), errs)
	}
	for i, name := range cases {
		e := errs[i]
		if e.Doc != i+1 {
			t.Errorf("%s: error on document %d, want %d", name, e.Doc, i+1)
		}
		if e.Field != wantField[name] {
			t.Errorf("%s: field %q, want %q", name, e.Field, wantField[name])
		}
		if !strings.HasPrefix(e.Message, wantMessage[name]) {
			t.Errorf("%s: message %q, want prefix %q", name, e.Message, wantMessage[name])
		}
	}
	if errs[0].Line != 11 {
		t.Errorf("error line = %d, want 11 (the wieght line)", errs[0].Line)
	}
	want := `decode-invalid.yaml: document 1 (VirtualService default/typo): spec.http[0].route[0].wieght: unknown field "wieght" in istio.networking.v1alpha3.HTTPRouteDestination`
	if got := errs[0].Error(); got != want {
		t.Errorf("Error() = %s\nwant      %s", got, want)
	}
}

func TestDecodeValidationInvalid(t *testing.T) {
	path := filepath.Join(corpusDir(t, "istio-invalid"), "validation-invalid.yaml")
	cases := decodeCases(t, path)
	objs, _, errs := decodeFile(t, path)
	for _, e := range errs {
		t.Errorf("unexpected decode error: %s", e.Error())
	}
	if len(objs) != len(cases) {
		t.Errorf("got %d objects, want %d", len(objs), len(cases))
	}
	for _, o := range objs {
		if err := checkAgainstJSONPB(o); err != nil {
			t.Errorf("%s: %v", o.Ref(), err)
		}
	}
}
