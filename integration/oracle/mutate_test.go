package oracle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// The mutation generator works on the JSON form of each base document
// (corpus objects and seeds): it walks every node and proposes edits from
// the tables below (values chosen per field name, structural edits, oneof
// swaps, insertions). Edits are grouped in buckets (kind + field pattern +
// edit); a seeded random pick keeps a few per bucket so that every kind of
// edit at every kind of place is tried while the total stays at a few
// thousand documents.

// mutationSeed fixes the variants; change it to explore other picks.
const mutationSeed = 20261125

// perBucket is how many variants are kept per bucket.
const perBucket = 2

// maxMutations bounds the run time.
const maxMutations = 6000

// jpath is a path into a JSON tree: string keys and int indices.
type jpath []any

func (p jpath) String() string {
	var b strings.Builder
	for _, k := range p {
		switch k := k.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

// pattern is the path with list indices erased: spec.http[].route[].weight.
func (p jpath) pattern() string {
	var b strings.Builder
	for _, k := range p {
		switch k := k.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			b.WriteString("[]")
		}
	}
	return b.String()
}

// field returns the n-th last string key (0 = the node's own field name, or
// the list's name for a list element).
func (p jpath) field(n int) string {
	for i := len(p) - 1; i >= 0; i-- {
		if s, ok := p[i].(string); ok {
			if n == 0 {
				return s
			}
			n--
		}
	}
	return ""
}

func (p jpath) with(k any) jpath {
	return append(append(jpath(nil), p...), k)
}

// edit sets (or deletes) the value at path.
type edit struct {
	path  jpath
	del   bool
	value any
}

// baseDoc is one valid document mutations start from.
type baseDoc struct {
	name string
	kind string
	tree map[string]any
}

// candidate is one proposed mutation.
type candidate struct {
	base   *baseDoc
	bucket string
	desc   string
	edits  []edit
}

// mutation is one generated variant.
type mutation struct {
	desc string
	doc  []byte
}

type generator struct {
	cands []candidate
}

// generateMutations returns the variants for the given base documents.
func generateMutations(bases []*baseDoc) ([]mutation, error) {
	g := &generator{}
	for _, b := range bases {
		g.walk(b, b.tree, nil)
	}
	// Group by bucket, then pick deterministically.
	buckets := map[string][]int{}
	var keys []string
	for i, c := range g.cands {
		if _, ok := buckets[c.bucket]; !ok {
			keys = append(keys, c.bucket)
		}
		buckets[c.bucket] = append(buckets[c.bucket], i)
	}
	sort.Strings(keys)
	rng := rand.New(rand.NewSource(mutationSeed))
	var picked []int
	for _, k := range keys {
		idx := buckets[k]
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		n := min(perBucket, len(idx))
		picked = append(picked, idx[:n]...)
	}
	if len(picked) > maxMutations {
		rng.Shuffle(len(picked), func(i, j int) { picked[i], picked[j] = picked[j], picked[i] })
		picked = picked[:maxMutations]
	}
	sort.Ints(picked)
	docs := make([][]byte, len(picked))
	errs := make([]error, len(picked))
	parallel(len(picked), func(k int) {
		docs[k], errs[k] = g.cands[picked[k]].materialize()
	})
	seen := map[string]bool{}
	var out []mutation
	for k, i := range picked {
		c := g.cands[i]
		if errs[k] != nil {
			return nil, fmt.Errorf("%s: %v", c.desc, errs[k])
		}
		if seen[string(docs[k])] {
			continue
		}
		seen[string(docs[k])] = true
		out = append(out, mutation{desc: c.desc, doc: docs[k]})
	}
	return out, nil
}

// materialize applies the edits to a copy of the base and renders YAML.
func (c candidate) materialize() ([]byte, error) {
	tree := deepCopy(c.base.tree)
	for _, e := range c.edits {
		tree = setIn(tree, e.path, e.del, deepCopy(e.value))
	}
	j, err := json.Marshal(tree)
	if err != nil {
		return nil, err
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, err
	}
	// Both judges read the YAML; make sure it says exactly what the JSON
	// says (JSON is YAML too, so fall back to it if not).
	back, err := yaml.YAMLToJSON(y)
	if err != nil || !jsonEqual(back, j) {
		return j, nil
	}
	return y, nil
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(normalizeNumbers(x), normalizeNumbers(y))
}

// normalizeNumbers makes 1.0 and 1 compare equal, as YAML re-encoding may
// change the spelling of a number but not its value.
func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalizeNumbers(e)
		}
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return v
}

// parseJSON decodes JSON keeping numbers exact.
func parseJSON(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

// setIn sets or deletes the value at p (an index equal to the list length
// appends) and returns the updated node.
func setIn(node any, p jpath, del bool, v any) any {
	if len(p) == 0 {
		return v
	}
	switch k := p[0].(type) {
	case string:
		m, ok := node.(map[string]any)
		if !ok {
			m = map[string]any{}
		}
		if len(p) == 1 && del {
			delete(m, k)
			return m
		}
		m[k] = setIn(m[k], p[1:], del, v)
		return m
	case int:
		s, _ := node.([]any)
		if len(p) == 1 && del {
			return append(append([]any{}, s[:k]...), s[k+1:]...)
		}
		if k == len(s) {
			s = append(s, nil)
		}
		s[k] = setIn(s[k], p[1:], del, v)
		return s
	}
	panic("bad path element")
}

// add records a candidate. op names the edit for bucketing ("set -1");
// detail, if not empty, replaces it in the description ("set -1 (was 90)").
func (g *generator) add(b *baseDoc, p jpath, op, detail string, edits ...edit) {
	if detail == "" {
		detail = op
	}
	g.cands = append(g.cands, candidate{
		base:   b,
		bucket: b.kind + "|" + p.pattern() + "|" + op,
		desc:   b.name + ": " + pathLabel(p) + ": " + detail,
		edits:  edits,
	})
}

func pathLabel(p jpath) string {
	if len(p) == 0 {
		return "(document)"
	}
	return p.String()
}

func show(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 80 {
		s = s[:60] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// walk proposes mutations for node at p and its children.
func (g *generator) walk(b *baseDoc, node any, p jpath) {
	if len(p) == 1 {
		switch p[0] {
		case "kind", "status":
			return
		case "apiVersion":
			for _, v := range apiVersions {
				if v != node {
					g.add(b, p, "set "+show(v), "", edit{path: p, value: v})
				}
			}
			return
		case "metadata":
			// Name and namespace only: checked by the apiserver, and
			// Istio has rules for Gateway names and for exportTo.
			names := objectNames
			if b.kind == "Gateway" {
				names = gatewayNames
			}
			for _, f := range []struct {
				field  string
				values []any
			}{{"name", names}, {"namespace", namespaceNames}} {
				fp := jpath{"metadata", f.field}
				g.add(b, fp, "drop field", "", edit{path: fp, del: true})
				for _, v := range f.values {
					g.add(b, fp, "set "+show(v), "", edit{path: fp, value: v})
				}
			}
			// Labels and annotations Istio's validation reads.
			for _, f := range []struct {
				field, key, value string
			}{
				{"labels", "istio.io/use-waypoint", "waypoint"},
				{"labels", "bad key!", "x"},
				{"annotations", "istio.io/dry-run", "true"},
				{"annotations", "internal.istio.io/webhook-always-reject", "true"},
				{"annotations", "internal.istio.io/route-semantics", "gateway"},
				{"annotations", "bad key!", "x"},
			} {
				fp := jpath{"metadata", f.field, f.key}
				g.add(b, fp, "add "+f.key+": "+f.value, "", edit{path: fp, value: f.value})
			}
			return
		}
	}
	g.structural(b, node, p)
	g.values(b, node, p)
	switch n := node.(type) {
	case map[string]any:
		g.oneofs(b, n, p)
		g.mapKeys(b, n, p)
		g.insertions(b, n, p)
		keys := make([]string, 0, len(n))
		for k := range n {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			g.walk(b, n[k], p.with(k))
		}
	case []any:
		for i, e := range n {
			g.walk(b, e, p.with(i))
		}
	}
}

// structural proposes dropping, emptying, duplicating, nulling, adding an
// unknown field and changing the JSON type.
func (g *generator) structural(b *baseDoc, node any, p jpath) {
	if len(p) == 0 {
		g.add(b, p, "add unknown top-level field bogusField", "", edit{path: jpath{"bogusField"}, value: true})
		return
	}
	if _, isIndex := p[len(p)-1].(int); isIndex {
		// Dropping one of several elements; one alone is covered by "[]".
		if parentLen(b.tree, p) > 1 {
			g.add(b, p, "drop element", "", edit{path: p, del: true})
		}
		// A null element is not pruned by the apiserver, unlike a null field.
		g.add(b, p, "set null", "", edit{path: p, value: nil})
	} else {
		g.add(b, p, "drop field", "", edit{path: p, del: true})
		g.add(b, p, "set null", "", edit{path: p, value: nil})
		// jsonpb reads the proto name too; the CRD schema does not.
		if name := p[len(p)-1].(string); snakeCase(name) != name {
			snake := append(append(jpath{}, p[:len(p)-1]...), snakeCase(name))
			g.add(b, p, "rename to snake_case", "rename to "+snakeCase(name),
				edit{path: snake, value: node}, edit{path: p, del: true})
		}
	}
	switch n := node.(type) {
	case map[string]any:
		if len(n) > 0 {
			g.add(b, p, "set {}", "", edit{path: p, value: map[string]any{}})
		}
		g.add(b, p, "add unknown field bogusField", "", edit{path: p.with("bogusField"), value: true})
		g.add(b, p, "set to a string", "", edit{path: p, value: "x"})
	case []any:
		if len(n) > 0 {
			g.add(b, p, "set []", "", edit{path: p, value: []any{}})
			g.add(b, p, "duplicate first element", "", edit{path: p.with(len(n)), value: n[0]})
		}
		g.add(b, p, "set to a string", "", edit{path: p, value: "x"})
	case string:
		g.add(b, p, "set to number 7", "", edit{path: p, value: json.Number("7")})
		g.add(b, p, "set to bool true", "", edit{path: p, value: true})
	case json.Number:
		g.add(b, p, "set to string", "set to string "+strconv.Quote(string(n)), edit{path: p, value: string(n)})
		g.add(b, p, "set to bool true", "", edit{path: p, value: true})
	case bool:
		g.add(b, p, "set to string \"true\"", "", edit{path: p, value: "true"})
		g.add(b, p, "set to number 1", "", edit{path: p, value: json.Number("1")})
	}
}

// snakeCase turns a camelCase JSON name into the proto field name it
// usually comes from: mirrorPercentage becomes mirror_percentage.
func snakeCase(name string) string {
	var b strings.Builder
	for i, r := range name {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func parentLen(tree any, p jpath) int {
	node := tree
	for _, k := range p[:len(p)-1] {
		switch k := k.(type) {
		case string:
			node = node.(map[string]any)[k]
		case int:
			node = node.([]any)[k]
		}
	}
	s, _ := node.([]any)
	return len(s)
}

// values proposes field-specific replacement values for scalars.
func (g *generator) values(b *baseDoc, node any, p jpath) {
	switch node.(type) {
	case string, json.Number, bool:
	default:
		return
	}
	for _, v := range valuesFor(b.kind, p, node) {
		if reflect.DeepEqual(v, node) {
			continue
		}
		g.add(b, p, "set "+show(v), fmt.Sprintf("set %s (was %s)", show(v), show(node)), edit{path: p, value: v})
	}
}

// Value tables. json.Number keeps integers exact in the YAML output.
func nums(vs ...string) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = json.Number(v)
	}
	return out
}

func strs(vs ...string) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

var (
	durations = strs("0s", "0.5ms", "1ms", "1.5ms", "1h", "-1s", "1.5s", "100ms", "1h30m", "0.001s", "5", "1d", "")
	ports     = nums("0", "1", "65535", "65536", "-1", "4294967296")
	percents  = nums("-1", "0", "0.00001", "0.0001", "50.5", "100", "100.0001", "101")
	int32s    = nums("-1", "0", "1", "2147483647", "2147483648")
	counters  = nums("-1", "0", "1", "4294967296")
	hundreds  = nums("-1", "0", "100", "101")

	meshHosts = strs("*", "*.example.com", "foo*.example.com", "*.*.example.com", "example.*", "a..b.com",
		"-bad.example.com", "UPPER.example.com", "under_score.example.com", "", "10.0.0.1", "2001:db8::1",
		"example.com.", strings.Repeat("a", 64)+".example.com", strings.Repeat("abcdefghi.", 26)+"com",
		"reviews", "reviews.default", "default/reviews", "*.")
	nsHosts = strs("*", "*/*", "ns/*", "./foo.example.com", "*/foo.example.com", "foo/bar/baz", "/foo.example.com",
		"ns/", "foo*.example.com", "", "*.example.com", "bad_ns/foo.example.com", "ns/UPPER.example.com", "~/*",
		"istio-system/*.example.com", "ns/10.0.0.1", "foo.example.com")
	destHosts = strs("*", "", "*.example.com", "foo*", "reviews.default.svc.cluster.local", "UPPER", "a_b",
		"10.0.0.1", "default/reviews", "-x", "reviews.")
	subsetNames = strs("", "v1.beta", "V1", "-v1", "v_1", "v1-", strings.Repeat("v", 64), "v2")
	portNames   = strs("", "http", "Bad Name", "http-1", "tcp", strings.Repeat("p", 64))
	apiVersions = strs("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3",
		"networking.istio.io/v2", "networking.istio.io", "v1", "security.istio.io/v1")
	objectNames    = strs("Bad_Name", "a.b", "", strings.Repeat("n", 254), "x", "-x")
	namespaceNames = strs("Bad_NS", "", "a.b", "ns1", "istio-system", strings.Repeat("n", 64))
	gatewayNames   = strs("bad.name", "Bad", "gw-1", "a_b", strings.Repeat("g", 254), "")
	gatewayRefs    = strs("mesh", "istio-system/gw", "gw", "./gw", "bad/name/x", "ns/", "/gw", "gw.ns",
		"gw.ns.svc.cluster.local", "GW", "*/gw", "", "ns/mesh", "-gw", "ns/Bad_Name")
	exportTos  = strs("*", ".", "~", "bad_ns", "Foo", "", "ns1", "a.b")
	namespaces = strs("bad_ns", "Foo", "", "ns1", "*", "a.b", strings.Repeat("n", 64))
	regexes    = strs("[", "(a", "a{1,2000}", ".*", "*", "(?=x)", `\d+`, "", strings.Repeat("a", 1025), "^/a$", `\`)
	retryOns   = strs("5xx, reset", "5xx,,reset", "599", "503", "bogus", "", "5xx,connect-failure",
		"retriable-status-codes,503", " 5xx", "5xx,", "200", "1000", "5XX", "-1",
		"gateway-error,reset,reset-before-request,connect-failure,retriable-4xx,refused-stream,retriable-status-codes,retriable-headers,envoy-ratelimited,http3-post-connect-failure,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable")
	grpcStatuses = strs("UNAVAILABLE", "14", "unavailable", "", "BOGUS", "OK", "DATA_LOSS")
	subnets      = strs("10.0.0.0/33", "10.0.0.1", "bad", "::/0", "10.0.0.0/8", "10.1.2.3/8", "", "2001:db8::/129",
		"2001:db8::/32", "10.0.0.0/-1", "256.0.0.1")
	addresses = strs("1.2.3.4", "unix:///var/run/x.sock", "unix://", "bad address", "foo.example.com", "",
		"2001:db8::1", "1.2.3.4:80", "*.example.com", "UPPER.example.com")
	binds            = strs("0.0.0.0", "127.0.0.1", "unix:///var/run/x.sock", "unix://", "bad", "::1", "", "10.0.0.1:80")
	defaultEndpoints = strs("127.0.0.1:8080", "unix:///var/run/x.sock", "0.0.0.0:8080", "bad", "127.0.0.1",
		":8080", "[::1]:8080", "127.0.0.1:0", "127.0.0.1:70000", "")
	methods     = strs("GET", "get", "FOO", "PATCH", "", "G ET", "CONNECT", "TRACE", "*")
	headerNames = strs("X-Upper", "bad header", ":authority", "", "host", "x_under", "x-ok", "content-length",
		":path", "x\u00e9", "Host", "x-envoy-foo")
	headerValues = strs("", "bad\nvalue", "%DOWNSTREAM_REMOTE_ADDRESS%", "%BOGUS%", "%", "100%", "%%",
		"%REQ(x-a)%", "a\x00b")
	labelKeys   = strs("bad key!", "", "a/b/c", "example.com/app", "-x", strings.Repeat("k", 64), "Valid.Key")
	labelValues = strs("bad value!", "", strings.Repeat("v", 64), "-x", "ok_value.1")
	protocols   = strs("HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS", "UDP", "http", "bogus", "",
		"GRPC-WEB", "Redis", "HTTP_PROXY")
	tlsModes = append(strs("DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "PASSTHROUGH", "AUTO_PASSTHROUGH",
		"OPTIONAL_MUTUAL", "REGISTRY_ONLY", "ALLOW_ANY", "STRICT", "simple", "1"), nums("0", "99")...)
	enumValues = map[string][]any{
		"simple":              append(strs("UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST", "BOGUS", "round_robin"), nums("5", "99")...),
		"resolution":          append(strs("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS", "BOGUS", "dns"), nums("4", "9")...),
		"location":            append(strs("MESH_EXTERNAL", "MESH_INTERNAL", "BOGUS"), nums("1", "5")...),
		"h2UpgradePolicy":     append(strs("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE", "BOGUS"), nums("3")...),
		"derivePort":          append(strs("FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT", "BOGUS"), nums("2")...),
		"unmatchedPreflights": append(strs("UNSPECIFIED", "FORWARD", "IGNORE", "BOGUS"), nums("7")...),
		"captureMode":         append(strs("DEFAULT", "IPTABLES", "NONE", "BOGUS"), nums("5")...),
		"minProtocolVersion":  append(strs("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3", "BOGUS"), nums("9")...),
		"maxProtocolVersion":  append(strs("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3", "BOGUS"), nums("9")...),
	}
	durationFields = map[string]bool{
		"timeout": true, "perTryTimeout": true, "backoff": true, "fixedDelay": true, "exponentialDelay": true,
		"connectTimeout": true, "interval": true, "baseEjectionTime": true, "maxAge": true, "idleTimeout": true,
		"maxConnectionDuration": true, "time": true, "ttl": true, "duration": true,
	}
	poolLimits = map[string]bool{
		"maxConnections": true, "http1MaxPendingRequests": true, "http2MaxRequests": true,
		"maxRequestsPerConnection": true, "maxRetries": true, "maxConcurrentStreams": true,
	}
	outlierCounters = map[string]bool{
		"consecutive5xxErrors": true, "consecutiveGatewayErrors": true, "consecutiveErrors": true,
		"consecutiveLocalOriginFailures": true, "probes": true,
	}
)

// valuesFor returns the replacement values worth trying at p.
func valuesFor(kind string, p jpath, node any) []any {
	f, parent, grand := p.field(0), p.field(1), p.field(2)
	pat := p.pattern()
	_, isString := node.(string)
	_, isNumber := node.(json.Number)

	if durationFields[f] && isString {
		if f == "maxAge" {
			return append(durations, "1.5s", "0.1s")
		}
		return durations
	}
	if vs, ok := enumValues[f]; ok {
		return vs
	}
	switch f {
	case "hosts":
		if kind == "Gateway" || kind == "Sidecar" {
			return nsHosts
		}
		return meshHosts
	case "sniHosts":
		return meshHosts
	case "host":
		return destHosts
	case "subset":
		return subsetNames
	case "name":
		switch {
		case pat == "spec.subsets[].name":
			return subsetNames
		case parent == "port" || parent == "ports":
			return portNames
		case parent == "httpCookie":
			return strs("", "c", "bad name")
		case parent == "delegate":
			return strs("", "Bad", "a.b", "team-routes")
		default:
			return strs("", "with space", "UPPER")
		}
	case "namespace":
		if parent == "delegate" {
			return strs("", "Bad_NS", "team", "*", "default")
		}
	case "gateways":
		return gatewayRefs
	case "exportTo":
		return exportTos
	case "sourceNamespace":
		return namespaces
	case "regex":
		return regexes
	case "exact":
		return strs("", "/", "with space", "*")
	case "prefix":
		return strs("", "/", "api", "*")
	case "match":
		if parent == "uriRegexRewrite" {
			return regexes
		}
	case "rewrite":
		if parent == "uriRegexRewrite" {
			return strs("", `/new/\1`, "/x")
		}
	case "mode":
		if parent == "outboundTrafficPolicy" {
			return append(strs("REGISTRY_ONLY", "ALLOW_ANY", "BOGUS"), nums("0", "7")...)
		}
		return tlsModes
	case "protocol":
		if parent == "tunnel" {
			return strs("CONNECT", "POST", "GET", "connect", "")
		}
		return protocols
	case "retryOn":
		return retryOns
	case "grpcStatus":
		return grpcStatuses
	case "http2Error":
		return strs("REFUSED_STREAM", "", "BOGUS")
	case "scheme":
		if isString {
			return strs("http", "https", "ftp", "HTTP", "")
		}
	case "authority":
		if isString {
			return strs("", "new.example.com", "bad host", "a.example.com:80", "*")
		}
	case "uri", "prefixRewrite":
		if isString {
			return strs("", "/x", "noslash", "/a b", "*")
		}
	case "destinationSubnets", "addresses", "sourceSubnet":
		return subnets
	case "address":
		return addresses
	case "bind":
		return binds
	case "defaultEndpoint":
		return defaultEndpoints
	case "allowMethods":
		return methods
	case "allowHeaders", "exposeHeaders", "remove":
		return headerNames
	case "allowOrigin":
		return strs("", "*", "https://x.example.com")
	case "locality":
		return strs("us-east/zone1/sub", "", "a/b/c/d", "*", "us-east//x", "us-east/*")
	case "from", "to":
		return strs("us-east", "", "*", "a/b", "us-east/zone1/sub1")
	case "failoverPriority":
		return strs("", "example.com/rack", "topology.kubernetes.io/region", "=x", "example.com/rack=a")
	case "network":
		return strs("n1", "", "bad network!")
	case "serviceAccount":
		return strs("", "sa", "Bad SA")
	case "credentialName":
		return strs("", "cert", "bad name", "kubernetes-gateway://x")
	case "serverCertificate", "privateKey", "caCertificates", "clientCertificate", "caCrl":
		return strs("", "/etc/x.pem", "relative.pem")
	case "subjectAltNames", "verifyCertificateSpki", "verifyCertificateHash":
		return strs("", "spiffe://x", "bad")
	case "cipherSuites":
		return strs("", "BOGUS-CIPHER", "ECDHE-RSA-AES128-GCM-SHA256")
	case "sni", "targetHost":
		return strs("", "x.example.com", "*", "bad host")
	case "bytes":
		return strs("aGVsbG8=", "not base64!", "", "aGk", "aGVsbG8=\n")
	case "string":
		if parent == "body" {
			return strs("", strings.Repeat("b", 100*1024+1), strings.Repeat("b", 1024*1024+1))
		}
	case "statPrefix":
		return strs("", "x", "with space")
	case "path":
		return strs("", "/", "noslash")
	}

	if !isNumber {
		if isString && grand == "headers" && (parent == "set" || parent == "add") {
			return headerValues
		}
		return nil
	}
	switch {
	case f == "number" || f == "targetPort" || f == "port":
		return ports
	case f == "weight":
		return nums("-1", "0", "1", "101", "2147483647", "2147483648", "4294967296")
	case f == "value":
		return percents
	case f == "attempts":
		return nums("-1", "0", "1", "100", "2147483648")
	case f == "httpStatus":
		return nums("0", "199", "200", "599", "600", "601")
	case f == "status":
		return nums("0", "99", "100", "199", "200", "599", "600")
	case f == "redirectCode":
		return nums("0", "200", "300", "301", "302", "303", "304", "307", "308", "309", "400")
	case f == "percent" || f == "mirrorPercent" || f == "maxEjectionPercent" || f == "minHealthPercent" || f == "minimumPercent":
		return hundreds
	case poolLimits[f]:
		return int32s
	case outlierCounters[f]:
		return counters
	case f == "minimumRingSize":
		return nums("-1", "0", "1", "1024", "8388608", "8388609", "9223372036854775808")
	case f == "tableSize":
		return nums("-1", "0", "1", "65536", "65537", "5000011", "5000012", "18446744073709551615")
	case f == "aggression":
		return nums("-1", "0", "0.5", "1", "2")
	case parent == "ports" && grand != "":
		// ServiceEntry endpoint / WorkloadEntry port maps: name -> number.
		return ports
	}
	return nums("-1", "0", "4294967296", "1.5")
}

// oneofGroup lists mutually exclusive fields; parent, if set, is the field
// the object must sit under.
type oneofGroup struct {
	parent  string
	members []string
}

var oneofGroups = []oneofGroup{
	{"", []string{"exact", "prefix", "regex"}},
	{"redirect", []string{"port", "derivePort"}},
	{"redirect", []string{"uri", "prefixRewrite"}},
	{"abort", []string{"httpStatus", "grpcStatus", "http2Error"}},
	{"delay", []string{"fixedDelay", "exponentialDelay"}},
	{"delay", []string{"percentage", "percent"}},
	{"loadBalancer", []string{"simple", "consistentHash"}},
	{"consistentHash", []string{"httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"}},
	{"consistentHash", []string{"ringHash", "maglev", "minimumRingSize"}},
	{"body", []string{"string", "bytes"}},
	{"http", []string{"route", "redirect", "directResponse", "delegate"}},
	{"http", []string{"mirror", "mirrors"}},
	{"http", []string{"mirrorPercentage", "mirrorPercent"}},
	{"rewrite", []string{"uri", "uriRegexRewrite"}},
	{"tls", []string{"credentialName", "serverCertificate"}},
}

// memberDefaults are plausible values for a oneof member that is swapped in.
var memberDefaults = map[string]any{
	"exact": "/x", "prefix": "/x", "regex": "/x.*",
	"port": json.Number("8443"), "derivePort": "FROM_REQUEST_PORT",
	"uri": "/u", "prefixRewrite": "/p",
	"httpStatus": json.Number("503"), "grpcStatus": "UNAVAILABLE", "http2Error": "REFUSED_STREAM",
	"fixedDelay": "1s", "exponentialDelay": "1s",
	"percentage": map[string]any{"value": json.Number("50")}, "percent": json.Number("50"),
	"simple":         "RANDOM",
	"consistentHash": map[string]any{"useSourceIp": true},
	"httpHeaderName": "x-user", "httpCookie": map[string]any{"name": "c", "ttl": "10s"}, "useSourceIp": true,
	"httpQueryParameterName": "q",
	"ringHash":               map[string]any{"minimumRingSize": json.Number("1024")},
	"maglev":                 map[string]any{"tableSize": json.Number("65537")},
	"minimumRingSize":        json.Number("1024"),
	"string":                 "hi", "bytes": "aGk=",
	"route":            []any{map[string]any{"destination": map[string]any{"host": "reviews"}}},
	"redirect":         map[string]any{"uri": "/r"},
	"directResponse":   map[string]any{"status": json.Number("503")},
	"delegate":         map[string]any{"name": "d", "namespace": "default"},
	"mirror":           map[string]any{"host": "reviews"},
	"mirrors":          []any{map[string]any{"destination": map[string]any{"host": "reviews"}}},
	"mirrorPercentage": map[string]any{"value": json.Number("50")}, "mirrorPercent": json.Number("50"),
	"uriRegexRewrite": map[string]any{"match": "^/a", "rewrite": "/b"},
	"credentialName":  "cert", "serverCertificate": "/etc/certs/server.pem",
}

// oneofs proposes swapping a set member for another one, and setting two.
func (g *generator) oneofs(b *baseDoc, n map[string]any, p jpath) {
	for _, grp := range oneofGroups {
		if grp.parent != "" && p.field(0) != grp.parent {
			continue
		}
		var present []string
		for _, m := range grp.members {
			if _, ok := n[m]; ok {
				present = append(present, m)
			}
		}
		if len(present) != 1 {
			continue
		}
		cur := present[0]
		for _, other := range grp.members {
			if other == cur {
				continue
			}
			val := memberDefaults[other]
			if s, ok := n[cur].(string); ok && (grp.members[0] == "exact") {
				val = s // StringMatch: keep the value, change the match type
			}
			g.add(b, p, "swap "+cur+" for "+other, "",
				edit{path: p.with(cur), del: true}, edit{path: p.with(other), value: val})
			g.add(b, p, "add "+other+" next to "+cur, "", edit{path: p.with(other), value: val})
		}
	}
}

// mapFields are map-typed fields whose keys are data (header names, labels,
// port names), not schema field names.
var mapFields = map[string]bool{
	"headers": true, "withoutHeaders": true, "queryParams": true, "set": true, "add": true,
	"labels": true, "sourceLabels": true, "selector": true, "matchLabels": true, "ports": true,
}

// mapKeys proposes renaming the first key of a map-typed field.
func (g *generator) mapKeys(b *baseDoc, n map[string]any, p jpath) {
	f := p.field(0)
	if !mapFields[f] || len(n) == 0 {
		return
	}
	if _, isList := p[len(p)-1].(int); isList {
		return
	}
	if f == "headers" {
		// VS route headers is {request, response}; only match headers is a map.
		if _, ok := n["request"]; ok {
			return
		}
		if _, ok := n["response"]; ok {
			return
		}
	}
	if f == "ports" && p.field(1) != "endpoints" && b.kind != "WorkloadEntry" {
		return
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	first := keys[0]
	var names []any
	switch f {
	case "headers", "withoutHeaders", "set", "add":
		names = headerNames
	case "queryParams":
		names = strs("", "q", "bad key", "Q")
	case "ports":
		names = portNames
	default:
		names = labelKeys
	}
	for _, k := range names {
		k := k.(string)
		if _, exists := n[k]; exists {
			continue
		}
		g.add(b, p, "rename a key to "+strconv.Quote(k), "rename key "+strconv.Quote(first)+" to "+strconv.Quote(k),
			edit{path: p.with(first), del: true}, edit{path: p.with(k), value: n[first]})
	}
	if f == "labels" || f == "sourceLabels" || f == "selector" || f == "matchLabels" {
		for _, v := range labelValues {
			g.add(b, p.with(first), "set label value "+show(v), "", edit{path: p.with(first), value: v})
		}
	}
}

// insertion adds a field that the base lacks.
type insertion struct {
	kind    string
	pattern string
	field   string
	values  []any
}

var insertions = []insertion{
	{"VirtualService", "spec.http[]", "timeout", durations},
	{"VirtualService", "spec.http[]", "retries", []any{
		map[string]any{"attempts": json.Number("0"), "retryOn": "5xx"},
		map[string]any{"attempts": json.Number("-1")},
		map[string]any{"attempts": json.Number("3"), "perTryTimeout": "0.5ms"},
		map[string]any{"attempts": json.Number("0")},
		map[string]any{},
	}},
	{"VirtualService", "spec.http[]", "fault", []any{
		map[string]any{},
		map[string]any{"abort": map[string]any{"httpStatus": json.Number("500")}},
		map[string]any{"delay": map[string]any{"fixedDelay": "1s"}},
		map[string]any{"abort": map[string]any{"percentage": map[string]any{"value": json.Number("5")}}},
	}},
	{"VirtualService", "spec.http[]", "mirrorPercentage", []any{map[string]any{"value": json.Number("50")}}},
	{"VirtualService", "spec.http[]", "corsPolicy", []any{
		map[string]any{},
		map[string]any{"allowOrigins": []any{map[string]any{}}},
		map[string]any{"allowOrigin": []any{"*"}, "allowOrigins": []any{map[string]any{"exact": "*"}}},
	}},
	{"VirtualService", "spec.http[]", "headers", []any{
		map[string]any{},
		map[string]any{"request": map[string]any{}},
		map[string]any{"request": map[string]any{"set": map[string]any{"x-a": "1"}, "remove": []any{"x-a"}}},
	}},
	{"VirtualService", "spec.http[]", "rewrite", []any{map[string]any{}, map[string]any{"uri": "/x"}}},
	{"VirtualService", "spec.http[]", "match", []any{[]any{map[string]any{}}, []any{}}},
	{"VirtualService", "spec.http[].match[]", "headers", []any{
		map[string]any{"x-a": map[string]any{"prefix": ""}},
		map[string]any{"x-a": map[string]any{}},
		map[string]any{"x-a": map[string]any{"regex": "*"}},
		map[string]any{"x-a": map[string]any{"exact": ""}},
		map[string]any{"@request.auth.claims.group": map[string]any{"exact": "admin"}},
	}},
	{"VirtualService", "spec.http[].match[]", "queryParams", []any{
		map[string]any{"q": map[string]any{"prefix": ""}},
		map[string]any{"q": map[string]any{}},
	}},
	{"VirtualService", "spec.http[].match[]", "gateways", []any{[]any{"mesh"}, []any{"other-gateway"}}},
	{"VirtualService", "spec", "exportTo", []any{[]any{"*", "ns1"}, []any{".", "."}, []any{"~"}, []any{}}},
	{"VirtualService", "spec", "gateways", []any{[]any{"mesh"}, []any{"istio-system/gw", "mesh"}, []any{}}},
	{"DestinationRule", "spec", "trafficPolicy", []any{
		map[string]any{},
		map[string]any{"connectionPool": map[string]any{}},
		map[string]any{"connectionPool": map[string]any{"http": map[string]any{}}},
		map[string]any{"outlierDetection": map[string]any{}},
		map[string]any{"loadBalancer": map[string]any{}},
		map[string]any{"tls": map[string]any{}},
		map[string]any{"portLevelSettings": []any{map[string]any{}}},
		map[string]any{"portLevelSettings": []any{map[string]any{"port": map[string]any{"number": json.Number("80")}}}},
		map[string]any{"connectionPool": map[string]any{"http": map[string]any{"h2UpgradePolicy": "UPGRADE", "useClientProtocol": true}}},
		map[string]any{"outlierDetection": map[string]any{"consecutiveLocalOriginFailures": json.Number("3")}},
	}},
	{"DestinationRule", "spec", "exportTo", []any{[]any{"*", "ns1"}, []any{"."}}},
	{"DestinationRule", "spec", "subsets", []any{[]any{map[string]any{}}, []any{map[string]any{"name": "v1"}, map[string]any{"name": "v1"}}}},
	{"Gateway", "spec.servers[]", "tls", []any{map[string]any{}, map[string]any{"mode": "SIMPLE"}, map[string]any{"httpsRedirect": true}}},
	{"Gateway", "spec.servers[]", "bind", []any{"127.0.0.1", "bad"}},
	// An empty list is written, so CEL has() and minItems see it.
	{"Gateway", "spec.servers[].tls", "credentialNames", []any{[]any{}, []any{"cred-a"}}},
	{"Gateway", "spec.servers[].tls", "tlsCertificates", []any{[]any{}}},
	{"Sidecar", "spec.ingress[].tls", "credentialNames", []any{[]any{}}},
	{"Sidecar", "spec.ingress[].tls", "tlsCertificates", []any{[]any{}}},
	{"ServiceEntry", "spec", "endpoints", []any{[]any{map[string]any{}}, []any{map[string]any{"address": "10.0.0.1"}}, []any{}}},
	{"ServiceEntry", "spec.endpoints[]", "ports", []any{map[string]any{}, map[string]any{"http": nil}}},
	{"ServiceEntry", "spec", "workloadSelector", []any{map[string]any{"labels": map[string]any{"app": "x"}}, map[string]any{}}},
	{"ServiceEntry", "spec", "addresses", []any{[]any{"10.0.0.0/24"}, []any{"bad"}}},
	{"ServiceEntry", "spec", "exportTo", []any{[]any{"*", "ns1"}, []any{"."}}},
	{"ServiceEntry", "spec", "subjectAltNames", []any{[]any{""}}},
	{"Sidecar", "spec", "outboundTrafficPolicy", []any{map[string]any{}, map[string]any{"mode": "REGISTRY_ONLY"}}},
	{"Sidecar", "spec", "ingress", []any{[]any{map[string]any{}}, []any{map[string]any{"port": map[string]any{"number": json.Number("80"), "protocol": "HTTP", "name": "http"}}}}},
	{"WorkloadEntry", "spec", "ports", []any{map[string]any{"http": json.Number("0")}, map[string]any{}, map[string]any{"http": nil}}},
}

func (g *generator) insertions(b *baseDoc, n map[string]any, p jpath) {
	pat := p.pattern()
	for _, ins := range insertions {
		if ins.kind != b.kind || ins.pattern != pat {
			continue
		}
		if _, exists := n[ins.field]; exists {
			continue
		}
		for _, v := range ins.values {
			g.add(b, p.with(ins.field), "add "+show(v), "", edit{path: p.with(ins.field), value: v})
		}
	}
}
