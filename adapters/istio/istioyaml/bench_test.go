package istioyaml

import (
	"fmt"
	"strings"
	"testing"
)

// manyVirtualServices builds a file of n VirtualServices like the bookinfo
// ones, with a header match, a weighted split, a timeout and retries.
func manyVirtualServices(n int) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-%d
  namespace: team-%d
spec:
  hosts:
  - svc-%d
  http:
  - match:
    - headers:
        end-user:
          exact: jason
      uri:
        prefix: /api
    route:
    - destination:
        host: svc-%d
        subset: v2
    timeout: 3s
  - route:
    - destination:
        host: svc-%d
        subset: v1
      weight: 90
    - destination:
        host: svc-%d
        subset: v3
      weight: 10
    retries:
      attempts: 3
      perTryTimeout: 2s
---
`, i, i%10, i, i, i, i)
	}
	return []byte(b.String())
}

func BenchmarkDecode10kVirtualServices(b *testing.B) {
	data := manyVirtualServices(10000)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		objs, _, errs := Decode("many.yaml", data, Options{})
		if len(objs) != 10000 || len(errs) != 0 {
			b.Fatalf("objs %d errs %v", len(objs), errs)
		}
	}
}

func BenchmarkLineOfEachObjectOnce(b *testing.B) {
	objs, _, _ := Decode("many.yaml", manyVirtualServices(100), Options{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := objs[i%len(objs)]
		if o.LineOf("spec.http[1].route[1].weight") <= o.Line {
			b.Fatal("bad line")
		}
	}
}

// manyVirtualServicesList is the same as one `kind: List` document, as
// `kubectl get virtualservices -A -o yaml` prints it.
func manyVirtualServicesList(n int) []byte {
	docs := strings.Split(strings.TrimSuffix(string(manyVirtualServices(n)), "---\n"), "---\n")
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for _, doc := range docs {
		for i, line := range strings.Split(strings.TrimSuffix(doc, "\n"), "\n") {
			if i == 0 {
				b.WriteString("- ")
			} else {
				b.WriteString("  ")
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return []byte(b.String())
}

func BenchmarkDecode10kVirtualServicesList(b *testing.B) {
	data := manyVirtualServicesList(10000)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		objs, _, errs := Decode("list.yaml", data, Options{})
		if len(objs) != 10000 || len(errs) != 0 {
			b.Fatalf("objs %d errs %v", len(objs), errs)
		}
	}
}
