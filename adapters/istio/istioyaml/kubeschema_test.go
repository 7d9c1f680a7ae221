package istioyaml

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// TestDecodeLikeKubeAPIServer covers where kube-apiserver's CRD schema and
// null pruning, which run before Istio sees an object, differ from what
// jsonpb alone would read.
func TestDecodeLikeKubeAPIServer(t *testing.T) {
	const (
		vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [reviews]\n"
		dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: reviews\n"
		se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [a.example.com]\n"
		we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec:\n  address: 10.0.0.1\n"
	)
	tests := []struct {
		name  string
		input string
		err   *wantProblem // nil: decoded
		check func(t *testing.T, o *Object)
	}{
		// A: a number written as a string ("type: integer" / "type: number").
		{
			name:  "int32 as a string",
			input: vs + "  http: [{route: [{destination: {host: reviews}, weight: \"50\"}]}]\n",
			err:   &wantProblem{1, "spec.http[0].route[0].weight", `must be an integer (int32), got string "50" (write the number without quotes)`, 6},
		},
		{
			name:  "uint32 as a string",
			input: vs + "  http: [{route: [{destination: {host: reviews, port: {number: \"9080\"}}}]}]\n",
			err:   &wantProblem{1, "spec.http[0].route[0].destination.port.number", `must be an integer (uint32), got string "9080" (write the number without quotes)`, 0},
		},
		{
			name:  "uint64 as a string",
			input: dr + "  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: \"1024\"}}}\n",
			err:   &wantProblem{1, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", `must be an integer (uint64), got string "1024" (write the number without quotes)`, 0},
		},
		{
			name:  "uint64 above the int64 range",
			input: dr + "  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 9223372036854775808}}}\n",
			err:   &wantProblem{1, "spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize", "number 9223372036854775808 is out of range for uint64 (0 to 9223372036854775807, the largest integer kube-apiserver reads)", 0},
		},
		{
			name:  "uint64 at the int64 limit",
			input: dr + "  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 9223372036854775807}}}\n",
		},
		{
			name:  "uint32 wrapper as a string",
			input: dr + "  trafficPolicy: {outlierDetection: {consecutive5xxErrors: \"5\"}}\n",
			err:   &wantProblem{1, "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", `must be an integer (uint32), got string "5"`, 0},
		},
		{
			name:  "double as a string",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirrorPercentage: {value: \"20\"}}]\n",
			err:   &wantProblem{1, "spec.http[0].mirrorPercentage.value", `must be a number (double), got string "20" (write the number without quotes)`, 0},
		},
		{
			name:  "double as NaN",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirrorPercentage: {value: NaN}}]\n",
			err:   &wantProblem{1, "spec.http[0].mirrorPercentage.value", `must be a number (double), got string "NaN"`, 0},
		},
		{
			name:  "double as an integer",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirrorPercentage: {value: 20}}]\n",
		},
		// B: an enum written as its number ("type: string" with an enum list).
		{
			name:  "enum as its number",
			input: dr + "  trafficPolicy: {tls: {mode: 1}}\n",
			err:   &wantProblem{1, "spec.trafficPolicy.tls.mode", "must be a string (enum istio.networking.v1alpha3.ClientTLSSettings.TLSmode), got number 1: write its name, SIMPLE", 6},
		},
		{
			name:  "enum as 0",
			input: se + "  location: 0\n",
			err:   &wantProblem{1, "spec.location", "got number 0: write its name, MESH_EXTERNAL", 0},
		},
		// C: a null list element is kept by kube-apiserver and rejected.
		{
			name:  "null message in a list",
			input: vs + "  http: [{match: [null], route: [{destination: {host: reviews}}]}]\n",
			err:   &wantProblem{1, "spec.http[0].match[0]", "must be an object (istio.networking.v1alpha3.HTTPMatchRequest), got null", 0},
		},
		{
			name:  "null string in a list",
			input: dr + "  trafficPolicy: {tls: {mode: SIMPLE, subjectAltNames: [a, null]}}\n",
			err:   &wantProblem{1, "spec.trafficPolicy.tls.subjectAltNames[1]", "must be a string, got null", 0},
		},
		{
			name:  "null list is unset",
			input: vs + "  gateways: null\n  http: [{route: [{destination: {host: reviews}}]}]\n",
			check: func(t *testing.T, o *Object) {
				if o.Has("spec.gateways") || o.Spec.(*networking.VirtualService).Gateways != nil {
					t.Errorf("gateways: null is set")
				}
			},
		},
		// D: a null map value is pruned, so the entry is absent.
		{
			name:  "null port of a WorkloadEntry",
			input: we + "  ports: {http: null, grpc: 9090}\n",
			check: func(t *testing.T, o *Object) {
				ports := o.Spec.(*networking.WorkloadEntry).Ports
				if _, ok := ports["http"]; ok || ports["grpc"] != 9090 || len(ports) != 1 {
					t.Errorf("ports = %v, want only grpc", ports)
				}
				if o.Has("spec.ports.http") || !o.Has("spec.ports.grpc") || !o.Has("spec.ports") {
					t.Errorf("Has: ports.http %v, ports.grpc %v, ports %v", o.Has("spec.ports.http"), o.Has("spec.ports.grpc"), o.Has("spec.ports"))
				}
			},
		},
		{
			name:  "null port of a ServiceEntry endpoint",
			input: se + "  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1, ports: {http: ~}}]\n",
			check: func(t *testing.T, o *Object) {
				if ports := o.Spec.(*networking.ServiceEntry).Endpoints[0].Ports; len(ports) != 0 {
					t.Errorf("ports = %v, want none", ports)
				}
			},
		},
		{
			name:  "null header match",
			input: vs + "  http: [{match: [{headers: {x-a: null, x-b: {exact: b}}}], route: [{destination: {host: reviews}}]}]\n",
			check: func(t *testing.T, o *Object) {
				headers := o.Spec.(*networking.VirtualService).Http[0].Match[0].Headers
				if _, ok := headers["x-a"]; ok || len(headers) != 1 {
					t.Errorf("headers = %v, want only x-b", headers)
				}
			},
		},
		// The body's bytes: "format: byte" is stricter than Go's base64.
		{
			name:  "empty bytes",
			input: vs + "  http: [{directResponse: {status: 200, body: {bytes: \"\"}}}]\n",
			err:   &wantProblem{1, "spec.http[0].directResponse.body.bytes", `must be a base64 string (standard alphabet, "=" padded, not empty), got string ""`, 0},
		},
		{
			name:  "bytes with a line break",
			input: vs + "  http: [{directResponse: {status: 200, body: {bytes: \"aGk=\\n\"}}}]\n",
			err:   &wantProblem{1, "spec.http[0].directResponse.body.bytes", "must be a base64 string", 0},
		},
		{
			name:  "bytes without padding",
			input: vs + "  http: [{directResponse: {status: 200, body: {bytes: aGk}}}]\n",
			err:   &wantProblem{1, "spec.http[0].directResponse.body.bytes", "must be a base64 string", 0},
		},
		{
			name:  "bytes",
			input: vs + "  http: [{directResponse: {status: 200, body: {bytes: aGk=}}}]\n",
			check: func(t *testing.T, o *Object) {
				if got := string(o.Spec.(*networking.VirtualService).Http[0].DirectResponse.Body.GetBytes()); got != "hi" {
					t.Errorf("bytes = %q", got)
				}
			},
		},
		// Field names: the CRD declares the JSON names, plus mirror_percent.
		{
			name:  "proto name",
			input: se + "  ports: [{number: 80, name: http, target_port: 8080}]\n",
			err:   &wantProblem{1, "spec.ports[0].target_port", `unknown field "target_port" in istio.networking.v1alpha3.ServicePort (write "targetPort")`, 0},
		},
		{
			name:  "CRD altName mirror_percent",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirror_percent: 50}]\n",
			check: func(t *testing.T, o *Object) {
				if got := o.Spec.(*networking.VirtualService).Http[0].GetMirrorPercent().GetValue(); got != 50 { //nolint:staticcheck // the deprecated field is the point
					t.Errorf("mirrorPercent = %d, want 50", got)
				}
				if !o.Has("spec.http[0].mirrorPercent") {
					t.Error("Has(mirrorPercent) = false for mirror_percent")
				}
			},
		},
		{
			name:  "mirror_percent beside mirrorPercent: the JSON name wins, as in jsonpb",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirror_percent: 50, mirrorPercent: 20}]\n",
			check: func(t *testing.T, o *Object) {
				if got := o.Spec.(*networking.VirtualService).Http[0].GetMirrorPercent().GetValue(); got != 20 { //nolint:staticcheck // the deprecated field is the point
					t.Errorf("mirrorPercent = %d, want 20", got)
				}
			},
		},
		{
			name:  "mirror_percent with a bad type is located as written",
			input: vs + "  http: [{route: [{destination: {host: reviews}}], mirror: {host: m}, mirror_percent: \"50\"}]\n",
			err:   &wantProblem{1, "spec.http[0].mirror_percent", `must be an integer (uint32), got string "50"`, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, errs := Decode("f.yaml", []byte(tt.input), Options{})
			if tt.err != nil {
				if len(errs) != 1 {
					t.Fatalf("got errors %v, want one", errs)
				}
				got := errs[0]
				if got.Doc != tt.err.doc || got.Field != tt.err.field || !strings.Contains(got.Message, tt.err.message) {
					t.Errorf("error = %s\nwant field %q, message containing %q", got.Error(), tt.err.field, tt.err.message)
				}
				if tt.err.line != 0 && got.Line != tt.err.line {
					t.Errorf("line %d, want %d", got.Line, tt.err.line)
				}
				return
			}
			if len(errs) != 0 || len(objs) != 1 {
				t.Fatalf("objects %d, errors %v", len(objs), errs)
			}
			if err := checkAgainstJSONPB(objs[0]); err != nil {
				t.Error(err)
			}
			if tt.check != nil {
				tt.check(t, objs[0])
			}
		})
	}
}

func TestObjectHas(t *testing.T) {
	input := `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: s
  labels: {app.kubernetes.io/name: s}
spec:
  hosts: [a.example.com]
  ports:
  - {number: 80, name: http, targetPort: 0}
  - {number: 81, name: http2, targetPort: null}
  resolution: STATIC
  endpoints: []
  workloadSelector: null
`
	objs, _, errs := Decode("f.yaml", []byte(input), Options{})
	if len(errs) != 0 || len(objs) != 1 {
		t.Fatalf("objects %d, errors %v", len(objs), errs)
	}
	o := objs[0]
	for path, want := range map[string]bool{
		"spec":                                   true,
		"spec.hosts":                             true,
		"spec.hosts[0]":                          true,
		"spec.hosts[1]":                          false,
		"spec.ports[0].targetPort":               true,
		"spec.ports[1].targetPort":               false,
		"spec.ports[2].targetPort":               false,
		"spec.endpoints":                         true,
		"spec.endpoints[0]":                      false,
		"spec.workloadSelector":                  false,
		"spec.location":                          false,
		"spec.hosts.x":                           false,
		"spec.ports.number":                      false,
		"spec.ports[x]":                          false,
		"metadata.labels.app.kubernetes.io/name": true,
		"metadata.labels.app":                    false,
	} {
		if got := o.Has(path); got != want {
			t.Errorf("Has(%q) = %v, want %v", path, got, want)
		}
	}
	if (&Object{}).Has("spec") {
		t.Error("an Object not made by Decode has a field")
	}
}
