package istioyaml

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// wantProblem is an expected error: its document, field and a part of its
// message.
type wantProblem struct {
	doc     int
	field   string
	message string
	line    int // 0: any line
}

func TestDecodeEdgeCases(t *testing.T) {
	tests := []struct {
		name     string
		input    string
		opts     Options
		objs     int
		warnings int
		errs     []wantProblem
		check    func(t *testing.T, objs []*Object, warnings []Problem)
	}{
		{name: "empty file", input: ""},
		{name: "blank lines only", input: "\n  \n\n"},
		{
			name:  "comment-only and empty documents",
			input: "# header\n---\n# nothing here\n\n---\n---\n",
		},
		{
			name:  "empty documents are not counted",
			input: "---\n# c\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: ns}\n---\n",
			objs:  2,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Doc != 1 || objs[0].Line != 4 || objs[1].Doc != 2 || objs[1].Line != 9 {
					t.Errorf("doc/line = %d/%d, %d/%d; want 1/4, 2/9", objs[0].Doc, objs[0].Line, objs[1].Doc, objs[1].Line)
				}
				if objs[0].Namespace != "default" || objs[1].Namespace != "ns" {
					t.Errorf("namespaces %q, %q", objs[0].Namespace, objs[1].Namespace)
				}
			},
		},
		{
			name:  "separator followed by a comment, CRLF line ends",
			input: "apiVersion: v1\r\nkind: Service\r\nmetadata: {name: a}\r\n--- # next\r\napiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: b\r\n",
			objs:  2,
		},
		{
			name:  "malformed separator",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n--- {a: 1}\nfoo: bar\n",
			errs:  []wantProblem{{1, "", `line 4: invalid document separator "--- {a: 1}"`, 4}},
		},
		{
			name:  "default namespace option",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {selector: {istio: ingressgateway}}\n",
			opts:  Options{DefaultNamespace: "prod"},
			objs:  1,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Namespace != "prod" || objs[0].Ref() != "Gateway prod/gw" {
					t.Errorf("ref = %s", objs[0].Ref())
				}
			},
		},
		{
			name: "List kind",
			input: `apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: a}
  spec: {hosts: [a]}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
- apiVersion: networking.istio.io/v1beta1
  kind: DestinationRule
  metadata: {name: b}
  spec:
    host: b
    wieght: 1
- apiVersion: networking.istio.io/v1alpha3
  kind: DestinationRule
  metadata: {name: c}
  spec: {host: c}
`,
			objs:     2,
			warnings: 1,
			errs:     []wantProblem{{1, "items[2].spec.wieght", `unknown field "wieght" in istio.networking.v1alpha3.DestinationRule`, 16}},
			check: func(t *testing.T, objs []*Object, warnings []Problem) {
				if objs[0].Name != "a" || objs[0].Line != 4 || objs[1].Name != "c" || objs[1].Line != 17 {
					t.Errorf("objects %s line %d, %s line %d", objs[0].Ref(), objs[0].Line, objs[1].Ref(), objs[1].Line)
				}
				if warnings[0].Kind != "Deployment" || warnings[0].Line != 8 {
					t.Errorf("warning %+v", warnings[0])
				}
				if got := objs[1].LineOf("spec.host"); got != 20 {
					t.Errorf("LineOf(spec.host) of a List item = %d, want 20", got)
				}
			},
		},
		{
			name: "List in flow style",
			input: `apiVersion: v1
kind: List
items: [
  {apiVersion: networking.istio.io/v1, kind: Gateway, metadata: {name: a}},
  {apiVersion: networking.istio.io/v1, kind: Gateway, metadata: {name: b},
   spec: {servers: [{port: {number: 80, protocol: HTTP, name: http}, hosts: ["*"]}]}}]
`,
			objs: 2,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Line != 4 || objs[1].Line != 5 {
					t.Errorf("lines %d, %d; want 4, 5", objs[0].Line, objs[1].Line)
				}
				if got := objs[1].LineOf("spec.servers[0].port.number"); got != 6 {
					t.Errorf("LineOf = %d, want 6", got)
				}
			},
		},
		{
			name: "List indented, with comments, followed by metadata",
			input: `# exported
apiVersion: v1
kind: List
items:
  # first
  - apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: a}
    spec:
      selector:
        app: x
  # second
  - apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata:
      name: b
    spec:
      servers:
      - port: {number: 80, protocol: HTTP, name: http}
        hosts: ["*"]
        bogus: 1
metadata:
  resourceVersion: ""
`,
			objs: 1,
			errs: []wantProblem{{1, "items[1].spec.servers[0].bogus", `unknown field "bogus" in istio.networking.v1alpha3.Server`, 21}},
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Line != 6 || objs[0].LineOf("spec.selector.app") != 11 {
					t.Errorf("line %d, LineOf(spec.selector.app) %d; want 6, 11", objs[0].Line, objs[0].LineOf("spec.selector.app"))
				}
			},
		},
		{
			name: "List inside a List",
			input: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: List
  items:
  - apiVersion: networking.istio.io/v1
    kind: Gateway
    metadata: {name: inner}
    spec: {selector: {app: x}}
`,
			objs: 1,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Line != 7 || objs[0].LineOf("spec.selector.app") != 10 {
					t.Errorf("line %d, LineOf %d; want 7, 10", objs[0].Line, objs[0].LineOf("spec.selector.app"))
				}
			},
		},
		{
			name:  "List with a bad item",
			input: "apiVersion: v1\nkind: List\nitems: [42]\n",
			errs:  []wantProblem{{1, "items[0]", "must be an object, got number 42", 0}},
		},
		{
			// jsonpb reads the proto name too, but the CRD schema knows
			// only the JSON name and kube-apiserver rejects it.
			name:  "snake_case key",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: snake}\nspec:\n  http:\n  - mirror_percentage: {value: 50}\n",
			errs:  []wantProblem{{1, "spec.http[0].mirror_percentage", `unknown field "mirror_percentage" in istio.networking.v1alpha3.HTTPRoute (write "mirrorPercentage")`, 6}},
		},
		{
			// kube-apiserver's CRD schema rejects it; jsonpb would read it.
			name:  "enum as a defined integer",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb}\nspec:\n  host: a\n  trafficPolicy: {loadBalancer: {simple: 4}}\n",
			errs:  []wantProblem{{1, "spec.trafficPolicy.loadBalancer.simple", "must be a string (enum istio.networking.v1alpha3.LoadBalancerSettings.SimpleLB), got number 4: write its name, ROUND_ROBIN", 6}},
		},
		{
			name:  "enum as an undefined integer",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb}\nspec:\n  host: a\n  trafficPolicy: {loadBalancer: {simple: 99}}\n",
			errs:  []wantProblem{{1, "spec.trafficPolicy.loadBalancer.simple", "got number 99: write one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST", 0}},
		},
		{
			name:  "enum as a quoted integer",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: lb}\nspec:\n  host: a\n  trafficPolicy: {loadBalancer: {simple: \"4\"}}\n",
			errs:  []wantProblem{{1, "spec.trafficPolicy.loadBalancer.simple", `unknown value "4" for enum`, 0}},
		},
		{
			// kube-apiserver's CRD schema rejects it; jsonpb would read it.
			name: "integer as a string",
			input: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: intstr}
spec:
  hosts: [a]
  http:
  - route:
    - destination: {host: a, port: {number: 9080}}
      weight: "50"
    - destination: {host: b}
      weight: 50
`,
			errs: []wantProblem{{1, "spec.http[0].route[0].weight", `must be an integer (int32), got string "50" (write the number without quotes)`, 9}},
		},
		{
			name:  "integer string that is not an integer",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  http:\n  - route:\n    - destination: {host: a}\n      weight: \"fifty\"\n",
			errs:  []wantProblem{{1, "spec.http[0].route[0].weight", `must be an integer (int32), got string "fifty"`, 0}},
		},
		{
			name:  "int32 out of range",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  http:\n  - route:\n    - destination: {host: a}\n      weight: 3000000000\n",
			errs:  []wantProblem{{1, "spec.http[0].route[0].weight", "number 3000000000 is out of range for int32", 0}},
		},
		{
			name: "nulls are unset",
			input: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nulls, namespace: null, labels: ~}
spec:
  hosts: [a]
  gateways: null
  http:
  - timeout: ~
    route:
    - destination: {host: a, subset: null}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: empty}
spec: null
`,
			objs: 2,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				vs := objs[0].Spec.(*networking.VirtualService)
				if objs[0].Namespace != "default" || vs.GetGateways() != nil || vs.GetHttp()[0].GetTimeout() != nil {
					t.Errorf("nulls not unset: %v", vs)
				}
				if _, ok := objs[1].Spec.(*networking.Sidecar); !ok {
					t.Errorf("spec: null gave %T, want an empty Sidecar", objs[1].Spec)
				}
			},
		},
		{
			name:  "wrapper takes the bare scalar",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: w}\nspec:\n  host: a\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 0, splitExternalLocalOriginErrors: true}\n",
			objs:  1,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				od := objs[0].Spec.(*networking.DestinationRule).GetTrafficPolicy().GetOutlierDetection()
				if od.GetConsecutive_5XxErrors() == nil || od.GetConsecutive_5XxErrors().GetValue() != 0 {
					t.Errorf("explicit 0 lost: %v", od)
				}
			},
		},
		{
			name:  "wrapper with a wrong type",
			input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: w}\nspec:\n  host: a\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: {value: 1}}\n",
			errs:  []wantProblem{{1, "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "must be an integer (uint32), got object", 0}},
		},
		{
			name:  "boolean written as true in a string field",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec:\n  hosts: [true]\n",
			errs:  []wantProblem{{1, "spec.hosts[0]", "must be a string, got boolean (quote it to make it a string)", 0}},
		},
		{
			name:  "first problem in document order, not in JSON key order",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: order}\nspec:\n  http:\n  - timeout: 5sec\n    corsPolicy: {bogus: 1}\n",
			errs:  []wantProblem{{1, "spec.http[0].timeout", "bad Duration", 6}},
		},
		{
			name:  "oneof conflict in block style",
			input: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: oneof}\nspec:\n  http:\n  - match:\n    - uri:\n        prefix: /b\n        regex: /c.*\n",
			errs:  []wantProblem{{1, "spec.http[0].match[0].uri", "only one of exact, prefix, regex may be set", 0}},
		},
		{
			name:  "unsupported apiVersion of an Istio kind",
			input: "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: v2}\nspec: {hosts: [a]}\n",
			errs:  []wantProblem{{1, "apiVersion", "apiVersion networking.istio.io/v2 is not supported for kind VirtualService", 0}},
		},
		{
			name:  "missing apiVersion",
			input: "kind: Gateway\nmetadata: {name: g}\n",
			errs:  []wantProblem{{1, "apiVersion", "apiVersion is required", 0}},
		},
		{
			name:  "Service without apiVersion",
			input: "kind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n",
			errs:  []wantProblem{{1, "apiVersion", "apiVersion is required", 0}},
		},
		{
			name:  "missing kind",
			input: "apiVersion: v1\nmetadata: {name: g}\n",
			errs:  []wantProblem{{1, "kind", "kind is required", 0}},
		},
		{
			name:  "missing name",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {namespace: a}\n",
			errs:  []wantProblem{{1, "metadata.name", "metadata.name is required", 0}},
		},
		{
			name:  "missing metadata",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nspec: {}\n",
			errs:  []wantProblem{{1, "metadata.name", "metadata.name is required", 0}},
		},
		{
			name:  "unknown top-level field",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspce: {}\n",
			errs:  []wantProblem{{1, "spce", `unknown field "spce" in Gateway`, 0}},
		},
		{
			name:  "unknown metadata field",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, nmespace: x}\n",
			errs:  []wantProblem{{1, "metadata.nmespace", `unknown field "nmespace" in ObjectMeta`, 0}},
		},
		{
			name:  "exported metadata fields are accepted",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, uid: x, resourceVersion: \"1\", generation: 2, creationTimestamp: null, annotations: {a.b/c: d}}\nstatus: {anything: 1}\n",
			objs:  1,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				if objs[0].Annotations["a.b/c"] != "d" {
					t.Errorf("annotations = %v", objs[0].Annotations)
				}
			},
		},
		{
			name:  "label that YAML reads as a number",
			input: "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {version: 1.10}\n",
			errs:  []wantProblem{{1, "metadata.labels.version", "must be a string, got number 1.1 (quote it)", 0}},
		},
		{
			name:  "spec that is not an object",
			input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: [a]\n",
			errs:  []wantProblem{{1, "spec", "must be an object, got array", 0}},
		},
		{
			name:  "document that is not a mapping",
			input: "- a\n- b\n",
			errs:  []wantProblem{{1, "", "document must be a YAML mapping", 0}},
		},
		{
			name:  "YAML syntax error keeps going and counts from the file start",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n\tlabels: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\n",
			objs:  2,
			errs:  []wantProblem{{2, "", "yaml: line 9: found a tab character", 9}},
		},
		{
			name: "skipped kinds are warnings",
			input: `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: istio-system}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa}
spec: {mtls: {mode: STRICT}}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: ksvc}
`,
			warnings: 3,
			check: func(t *testing.T, _ []*Object, warnings []Problem) {
				want := "f.yaml: document 1 (EnvoyFilter istio-system/ef): kind EnvoyFilter (apiVersion networking.istio.io/v1alpha3) is not used by caddy-istio; skipped"
				if warnings[0].Error() != want {
					t.Errorf("warning = %s\nwant      %s", warnings[0].Error(), want)
				}
				if warnings[2].Kind != "Service" || warnings[2].Doc != 3 || warnings[2].Line != 10 {
					t.Errorf("warning = %+v", warnings[2])
				}
			},
		},
		{
			name: "Kubernetes Service ports",
			input: `apiVersion: v1
kind: Service
metadata: {name: httpbin, labels: {app: httpbin}}
spec:
  clusterIP: None
  selector: {app: httpbin}
  ports:
  - {name: http, port: 8000, targetPort: 8080, appProtocol: http}
  - {name: grpc, port: 9000, targetPort: grpc-port, protocol: TCP}
  - {name: dns, port: 53, protocol: UDP}
`,
			objs: 1,
			check: func(t *testing.T, objs []*Object, _ []Problem) {
				svc := objs[0].Service
				if svc.ClusterIP != "None" || svc.Selector["app"] != "httpbin" || len(svc.Ports) != 3 {
					t.Fatalf("service = %+v", svc)
				}
				want := []KubeServicePort{
					{Name: "http", Protocol: "TCP", AppProtocol: "http", Port: 8000, TargetPort: "8080", TargetPortInt: 8080, TargetPortIsInt: true},
					{Name: "grpc", Protocol: "TCP", Port: 9000, TargetPort: "grpc-port"},
					{Name: "dns", Protocol: "UDP", Port: 53},
				}
				for i := range want {
					if svc.Ports[i] != want[i] {
						t.Errorf("port %d = %+v, want %+v", i, svc.Ports[i], want[i])
					}
				}
			},
		},
		{
			name:  "Kubernetes Service with a bad port",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - {name: http, port: http}\n",
			errs:  []wantProblem{{1, "spec.ports[0].port", `must be an integer (int32), got string "http"`, 0}},
		},
		{
			name:  "Kubernetes Service without port",
			input: "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - {name: http, targetPort: 8080}\n",
			errs:  []wantProblem{{1, "spec.ports[0].port", "port is required", 0}},
		},
		{
			name: "one error per document, others still decode",
			input: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad}
spec:
  hosts: reviews
  http: 5
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: good}
spec: {hosts: [reviews]}
`,
			objs: 1,
			errs: []wantProblem{{1, "spec.hosts", "must be an array", 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, warnings, errs := Decode("f.yaml", []byte(tt.input), tt.opts)
			if len(objs) != tt.objs {
				t.Errorf("got %d objects, want %d", len(objs), tt.objs)
			}
			if len(warnings) != tt.warnings {
				t.Errorf("got %d warnings, want %d: %v", len(warnings), tt.warnings, warnings)
			}
			if len(errs) != len(tt.errs) {
				t.Fatalf("got %d errors, want %d: %v", len(errs), len(tt.errs), errs)
			}
			for i, want := range tt.errs {
				got := errs[i]
				if got.Doc != want.doc || got.Field != want.field || !strings.Contains(got.Message, want.message) {
					t.Errorf("error %d = %s (doc %d, field %q)\nwant doc %d, field %q, message containing %q",
						i, got.Error(), got.Doc, got.Field, want.doc, want.field, want.message)
				}
				if got.File != "f.yaml" || got.Line == 0 || (want.line != 0 && got.Line != want.line) {
					t.Errorf("error %d location: file %q line %d, want line %d", i, got.File, got.Line, want.line)
				}
			}
			for _, c := range splitDocuments([]byte(tt.input)) {
				if err := checkListCut(c); err != nil {
					t.Error(err)
				}
			}
			for _, o := range objs {
				if err := checkAgainstJSONPB(o); err != nil {
					t.Errorf("%s: %v", o.Ref(), err)
				}
			}
			if t.Failed() || tt.check == nil {
				return
			}
			tt.check(t, objs, warnings)
		})
	}
}

func TestLineOf(t *testing.T) {
	input := `# A leading comment
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  labels:
    app.kubernetes.io/name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination:
        host: reviews
        subset: v2
      weight: 90
    - destination: {host: reviews, subset: v1}
      weight: 10
`
	objs, _, errs := Decode("f.yaml", []byte(input), Options{})
	if len(errs) != 0 || len(objs) != 1 {
		t.Fatalf("objs %d errs %v", len(objs), errs)
	}
	o := objs[0]
	if o.Line != 2 {
		t.Errorf("Line = %d, want 2 (first line after the leading comment)", o.Line)
	}
	tests := []struct {
		field string
		want  int
	}{
		{"", 2},
		{"metadata.name", 5},
		{"metadata.labels.app.kubernetes.io/name", 7},
		{"spec.hosts[0]", 10},
		{"spec.http[0].match[0].headers.end-user.exact", 14},
		{"spec.http[0].route[0]", 16},
		{"spec.http[0].route[0].destination.subset", 18},
		{"spec.http[0].route[0].weight", 19},
		{"spec.http[0].route[1].weight", 21},
		{"spec.http[0].route[1].destination.subset", 20},
		{"spec.http[0].timeout", 12},      // absent: the deepest part found (the rule)
		{"spec.http[3].route", 11},        // index out of range: the list's key
		{"nonexistent.field", 2},          // nothing found: the document start
		{"spec.http[0].route[x]", 15},     // malformed index: the list's key
		{"spec.http[0].route[1].", 20},    // trailing dot: the element
		{"spec.http[0].match[0].uri", 13}, // absent in the match: the match element
	}
	for _, tt := range tests {
		if got := o.LineOf(tt.field); got != tt.want {
			t.Errorf("LineOf(%q) = %d, want %d", tt.field, got, tt.want)
		}
	}

	// An object built by hand has no source: LineOf falls back to Line.
	manual := &Object{Line: 7}
	if got := manual.LineOf("spec.hosts"); got != 7 {
		t.Errorf("LineOf without source = %d, want 7", got)
	}
}

// LineOf may be called from several goroutines (its cache is shared).
func TestLineOfConcurrent(t *testing.T) {
	objs, _, errs := Decode("sink.yaml", []byte(kitchenSink), Options{})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := make([]int, len(objs))
	for i, o := range objs {
		want[i] = o.LineOf("spec")
	}
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for n := 0; n < 50; n++ {
				i := (n + g) % len(objs)
				if got := objs[i].LineOf("spec"); got != want[i] {
					t.Errorf("LineOf(spec) of %s = %d, want %d", objs[i].Ref(), got, want[i])
					return
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
