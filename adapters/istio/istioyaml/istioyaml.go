// Package istioyaml decodes multi-document Istio configuration files (the
// YAML users give to kubectl) into istio.io/api networking messages and
// Kubernetes Services, strictly: unknown fields, wrong JSON types, bad enums
// and durations, and oneof conflicts are errors naming the exact field path
// and line, where Istio's own generated decoder would silently drop or
// accept them.
//
// JSON types follow what kube-apiserver's CRD schema accepts before Istio
// sees the object, which is stricter than jsonpb: a number written as a
// string ("9080") or an enum written as its number (mode: 1) is an error,
// and so is a null list element; a null field or map value is pruned, so it
// is absent. Object.Has tells whether a field was written, for the CRD rules
// that depend on it.
//
// The steps: split on "---" lines like k8s.io/apimachinery's YAMLReader;
// read each document with kubectl's YAML 1.1 semantics (what
// sigs.k8s.io/yaml.YAMLToJSON gives); check the envelope (apiVersion, kind,
// metadata, `kind: List` items); walk the spec alongside the protobuf
// descriptors to find the first problem; then build the message exactly as
// strict golang/protobuf jsonpb would (Go-style durations like "1.5s").
package istioyaml

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Options configures Decode.
type Options struct {
	// DefaultNamespace is the namespace of objects whose metadata.namespace
	// is empty. Default: "default".
	DefaultNamespace string
}

// Decode decodes every document of a multi-document YAML file. file names
// the input in messages ("" for stdin or the admin API).
//
// It returns every good object, a warning for each document of a kind that
// caddy-istio does not use, and at most one error per bad document (the
// first problem in document order). It never panics and keeps going after a
// bad document.
func Decode(file string, data []byte, opts Options) (objs []*Object, warnings []Problem, errs []Problem) {
	namespace := opts.DefaultNamespace
	if namespace == "" {
		namespace = "default"
	}
	chunks := splitDocuments(data)
	workers := min(runtime.GOMAXPROCS(0), len(chunks)/parallelMinChunks)
	if workers <= 1 {
		return decodeSequential(file, namespace, chunks)
	}
	return decodeParallel(file, namespace, chunks, workers)
}

// decodeSequential decodes the documents one after the other.
func decodeSequential(file, namespace string, chunks []chunk) (objs []*Object, warnings []Problem, errs []Problem) {
	d := &decoder{file: file, namespace: namespace}
	docNum := 0
	for _, c := range chunks {
		docNum = d.decodeChunk(c, docNum)
	}
	return d.objs, d.warnings, d.errs
}

// parallelMinChunks is the number of documents per worker below which
// decoding them in parallel is not worth starting goroutines.
const parallelMinChunks = 64

// chunkResult is what one document decoded on its own gives: its
// document numbers count from 0, to be shifted by the documents before it.
type chunkResult struct {
	decoder
	docs int // non-empty documents: 0 or 1
}

// decodeParallel decodes the documents on workers goroutines, each
// document on its own, then puts the results together in document order
// with the numbering a sequential decode gives (a document's number
// depends on how many non-empty documents precede it).
func decodeParallel(file, namespace string, chunks []chunk, workers int) (objs []*Object, warnings []Problem, errs []Problem) {
	results := make([]chunkResult, len(chunks))
	var next atomic.Int64
	const batch = 32 // documents a worker takes at a time
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				end := int(next.Add(batch))
				start := end - batch
				if start >= len(chunks) {
					return
				}
				for i := start; i < min(end, len(chunks)); i++ {
					r := &results[i]
					r.file, r.namespace = file, namespace
					r.docs = r.decodeChunk(chunks[i], 0)
				}
			}
		})
	}
	wg.Wait()

	nObjs := 0
	for i := range results {
		nObjs += len(results[i].objs)
	}
	if nObjs > 0 {
		objs = make([]*Object, 0, nObjs)
	}
	base := 0
	for i := range results {
		r := &results[i]
		for _, o := range r.objs {
			o.Doc += base
		}
		for j := range r.warnings {
			r.warnings[j].Doc += base
		}
		for j := range r.errs {
			r.errs[j].Doc += base
		}
		objs = append(objs, r.objs...)
		warnings = append(warnings, r.warnings...)
		errs = append(errs, r.errs...)
		base += r.docs
	}
	return objs, warnings, errs
}

// decoder accumulates the results of one Decode call.
type decoder struct {
	file      string
	namespace string

	objs     []*Object
	warnings []Problem
	errs     []Problem
}

// decodeChunk decodes one raw document and returns the updated count of
// non-empty documents. A panic (a bug, or a library choking on odd input)
// becomes an error for that document only.
func (d *decoder) decodeChunk(c chunk, docNum int) (newDocNum int) {
	newDocNum = docNum
	defer func() {
		if r := recover(); r != nil {
			d.errs = append(d.errs, Problem{
				File: d.file, Doc: newDocNum, Line: c.startLine,
				Message: fmt.Sprintf("internal error decoding document: %v", r),
			})
		}
	}()

	if c.err != "" {
		newDocNum++
		d.errs = append(d.errs, Problem{File: d.file, Doc: newDocNum, Line: c.errLine, Message: c.err})
		return newDocNum
	}
	root, err := yamlToTree(c.data)
	if err != nil {
		newDocNum++
		message, line := yamlErrorMessage(err, c.firstLine)
		if line == 0 {
			line = c.startLine
		}
		d.errs = append(d.errs, Problem{File: d.file, Doc: newDocNum, Line: line, Message: message})
		return newDocNum
	}
	if root == nil {
		return newDocNum // empty or comment-only document
	}
	newDocNum++
	doc := &document{chunk: c, file: d.file, num: newDocNum}
	top, ok := root.(map[string]any)
	if !ok {
		d.errs = append(d.errs, doc.problem(nil, "", "document must be a YAML mapping (an object with apiVersion and kind), got "+describe(root)))
		return newDocNum
	}
	d.decodeObject(doc, "", source{data: c.data, firstLine: c.firstLine, line: c.startLine}, top)
	return newDocNum
}

// document is one non-empty document of the file.
type document struct {
	chunk
	file string
	num  int
}

// source is the YAML text of one object, for positions.
type source struct {
	data      []byte
	firstLine int    // file line of data's first byte
	prefix    string // path of the object within data
	line      int    // file line where the object starts
}

// problem builds a Problem located in this document; obj may be nil.
func (doc *document) problem(obj *Object, field, message string) Problem {
	p := Problem{Field: field, Message: message}
	if obj != nil {
		p = ProblemFor(obj, field, message)
	}
	p.File, p.Doc = doc.file, doc.num
	if p.Line == 0 {
		p.Line = doc.startLine
	}
	return p
}

// newSpecs maps the Istio kinds caddy-istio uses to a constructor of their
// spec message.
var newSpecs = map[string]func() proto.Message{
	"VirtualService":  func() proto.Message { return &networking.VirtualService{} },
	"DestinationRule": func() proto.Message { return &networking.DestinationRule{} },
	"Gateway":         func() proto.Message { return &networking.Gateway{} },
	"ServiceEntry":    func() proto.Message { return &networking.ServiceEntry{} },
	"WorkloadEntry":   func() proto.Message { return &networking.WorkloadEntry{} },
	"Sidecar":         func() proto.Message { return &networking.Sidecar{} },
}

// istioAPIVersions are the served versions of networking.istio.io; v1 and
// v1beta1 are aliases of the v1alpha3 types.
var istioAPIVersions = map[string]bool{
	"networking.istio.io/v1":       true,
	"networking.istio.io/v1beta1":  true,
	"networking.istio.io/v1alpha3": true,
}

// envelopeFields are the top-level fields of a Kubernetes object; any other
// is an error (kubectl's strict field validation rejects it too).
var envelopeFields = map[string]bool{"apiVersion": true, "kind": true, "metadata": true, "spec": true, "status": true}

// objectMetaFields are the fields of Kubernetes ObjectMeta. Only name,
// namespace, labels and annotations are used; the others appear in objects
// exported from a cluster and are ignored.
var objectMetaFields = map[string]bool{
	"name": true, "generateName": true, "namespace": true, "selfLink": true, "uid": true,
	"resourceVersion": true, "generation": true, "creationTimestamp": true,
	"deletionTimestamp": true, "deletionGracePeriodSeconds": true, "labels": true,
	"annotations": true, "ownerReferences": true, "finalizers": true, "managedFields": true,
}

// decodeObject decodes one Kubernetes object (a document, or an item of a
// List document, in which case prefix is "items[i].").
// src is the object's YAML text, for positions.
func (d *decoder) decodeObject(doc *document, prefix string, src source, top map[string]any) {
	obj := &Object{
		File: d.file, Doc: doc.num, Line: src.line,
		src: src.data, srcFirstLine: src.firstLine, srcPrefix: src.prefix,
	}
	fail := func(field, message string, line int) {
		p := doc.problem(obj, prefix+field, message)
		if line > 0 {
			p.Line = line
		}
		d.errs = append(d.errs, p)
	}

	// apiVersion and kind first: they decide how strict the rest is.
	var issues []issue
	obj.APIVersion, issues = envelopeString(top, "apiVersion", issues)
	obj.Kind, issues = envelopeString(top, "kind", issues)
	if len(issues) > 0 {
		fail(issues[0].field, issues[0].message, 0)
		return
	}
	if obj.Kind == "" {
		fail("kind", "kind is required", 0)
		return
	}

	_, isIstio := newSpecs[obj.Kind]
	// A Service without apiVersion is taken as core/v1 so that the missing
	// apiVersion is reported rather than the Service silently skipped.
	isService := obj.Kind == "Service" && (obj.APIVersion == "v1" || obj.APIVersion == "")
	if obj.Kind == "List" {
		d.decodeList(doc, obj, prefix, src, top)
		return
	}
	if !isIstio && !isService {
		// Not ours: name it leniently in the warning and move on.
		meta := lenientMetadata(top["metadata"])
		obj.Name, obj.Namespace = meta.name, meta.namespace
		if obj.Namespace == "" {
			obj.Namespace = d.namespace
		}
		what := "kind " + obj.Kind
		if obj.APIVersion != "" {
			what += " (apiVersion " + obj.APIVersion + ")"
		}
		d.warnings = append(d.warnings, doc.problem(obj, "", what+" is not used by caddy-istio; skipped"))
		return
	}

	w := newSchemaWalker()
	if obj.APIVersion == "" {
		w.add("apiVersion", "apiVersion is required")
	} else if isIstio && !istioAPIVersions[obj.APIVersion] {
		w.add("apiVersion", fmt.Sprintf("apiVersion %s is not supported for kind %s (use networking.istio.io/v1, v1beta1 or v1alpha3)", obj.APIVersion, obj.Kind))
	}
	for k := range top {
		if !envelopeFields[k] {
			w.add(k, fmt.Sprintf("unknown field %q in %s (want apiVersion, kind, metadata, spec)", k, obj.Kind))
		}
	}
	d.decodeMetadata(w, obj, top["metadata"])

	spec, _ := top["spec"].(map[string]any)
	if spec == nil && top["spec"] != nil {
		w.add("spec", "must be an object, got "+describe(top["spec"]))
	}

	var msg proto.Message
	if isIstio {
		msg = newSpecs[obj.Kind]()
		if spec != nil {
			w.withPath("spec", func() { w.message(msg.ProtoReflect().Descriptor(), spec) })
		}
	} else {
		obj.Service = decodeKubeService(w, spec)
	}

	if len(w.issues) > 0 {
		first := firstIssue(obj, w.issues)
		fail(first.field, first.message, first.line)
		return
	}

	// The object's JSON is kept for Has, and its spec is what jsonpb reads.
	fields, err := appendTreeJSON(make([]byte, 0, 512), top)
	if err != nil {
		fail("spec", err.Error(), 0)
		return
	}
	if isIstio {
		if spec != nil {
			if err := unmarshalStrict(specJSON(fields), msg); err != nil {
				fail("spec", err.Error(), 0)
				return
			}
		}
		obj.Spec = msg
	}
	obj.fields = fields
	d.objs = append(d.objs, obj)
}

// decodeList decodes the items of a `kind: List` document, each as an
// object whose problems' fields start with items[i].
func (d *decoder) decodeList(doc *document, obj *Object, prefix string, src source, top map[string]any) {
	if top["items"] == nil {
		return
	}
	items, ok := top["items"].([]any)
	if !ok {
		d.errs = append(d.errs, doc.problem(obj, prefix+"items", "must be an array, got "+describe(top["items"])))
		return
	}
	// Each item gets its own lines when they can be cut out (kubectl's block
	// style), so that positions need not parse the whole list again.
	spans := blockListItems(src, len(items))
	var tree *yamlTree
	if spans == nil {
		tree = parseYAMLTree(src.data, src.firstLine)
	}
	for i, item := range items {
		itemPrefix := prefix + "items[" + strconv.Itoa(i) + "]."
		itemSrc := source{data: src.data, firstLine: src.firstLine, prefix: src.prefix + "items[" + strconv.Itoa(i) + "].", line: src.line}
		if spans != nil {
			itemSrc = spans[i]
		} else if tree != nil {
			if line, _ := tree.position(strings.TrimSuffix(itemSrc.prefix, ".")); line > 0 {
				itemSrc.line = line
			}
		}
		if item == nil {
			continue
		}
		itemTop, ok := item.(map[string]any)
		if !ok {
			p := doc.problem(obj, strings.TrimSuffix(itemPrefix, "."), "must be an object, got "+describe(item))
			p.Line = itemSrc.line
			d.errs = append(d.errs, p)
			continue
		}
		d.decodeObject(doc, itemPrefix, itemSrc, itemTop)
	}
}

// blockListItems cuts the items of a List in block style out of its text:
// a top-level "items:" line followed by "- " lines at one indentation, as
// kubectl prints. It returns nil when the text does not have that shape or
// the count differs from the items decoded (flow style, odd layouts).
func blockListItems(src source, count int) []source {
	if src.prefix != "" || count == 0 {
		return nil
	}
	data := src.data
	spans := make([]source, 0, count)
	inItems := false
	indent := -1
	end := -1 // end of the sequence, if something follows it
	line := src.firstLine
	for pos := 0; pos < len(data) && end < 0; line++ {
		next := len(data)
		if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		text := data[pos:next]
		trimmed := bytes.TrimLeft(text, " ")
		col := len(text) - len(trimmed)
		body := bytes.TrimRight(trimmed, " \t\r\n")
		switch {
		case len(body) == 0 || body[0] == '#':
			// blank or comment
		case !inItems:
			if col == 0 && isItemsKey(body) {
				inItems = true
			}
		case indent < 0 && isSequenceEntry(body):
			indent = col
			spans = append(spans, source{data: data[pos:], firstLine: line, prefix: "[0].", line: line})
		case indent >= 0 && col == indent && isSequenceEntry(body):
			spans = append(spans, source{data: data[pos:], firstLine: line, prefix: "[0].", line: line})
		case col < indent || (col == indent && indent >= 0) || indent < 0:
			end = pos // the sequence is over
		}
		pos = next
	}
	if len(spans) != count {
		return nil
	}
	// Each item runs to the next one, the last to the end of the sequence.
	for i := range spans {
		stop := len(spans[i].data)
		if i+1 < len(spans) {
			stop = len(spans[i].data) - len(spans[i+1].data)
		} else if end >= 0 {
			stop = len(spans[i].data) - (len(data) - end)
		}
		spans[i].data = spans[i].data[:stop]
	}
	return spans
}

// isItemsKey reports whether a line is the key "items:" with a block value.
func isItemsKey(body []byte) bool {
	rest, ok := bytes.CutPrefix(body, []byte("items:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	return len(rest) == 0 || rest[0] == '#'
}

// isSequenceEntry reports whether a line starts a block sequence entry.
func isSequenceEntry(body []byte) bool {
	return body[0] == '-' && (len(body) == 1 || body[1] == ' ' || body[1] == '\t')
}

// decodeMetadata fills obj's name, namespace, labels and annotations.
func (d *decoder) decodeMetadata(w *schemaWalker, obj *Object, v any) {
	obj.Namespace = d.namespace
	if v == nil {
		w.add("metadata.name", "metadata.name is required")
		return
	}
	meta, ok := v.(map[string]any)
	if !ok {
		w.add("metadata", "must be an object, got "+describe(v))
		return
	}
	for k := range meta {
		if !objectMetaFields[k] {
			w.add("metadata."+k, fmt.Sprintf("unknown field %q in ObjectMeta", k))
		}
	}
	if name, ok := stringField(w, meta, "metadata.name"); ok && name != "" {
		obj.Name = name
	} else if ok {
		w.add("metadata.name", "metadata.name is required")
	}
	if ns, ok := stringField(w, meta, "metadata.namespace"); ok && ns != "" {
		obj.Namespace = ns
	}
	obj.Labels = stringMapField(w, meta, "metadata.labels")
	obj.Annotations = stringMapField(w, meta, "metadata.annotations")
}

// stringField reads meta[key] (key being the last element of path) as a
// string; ok is false when it has the wrong type. A missing or null value is
// "" and ok.
func stringField(w *schemaWalker, m map[string]any, path string) (s string, ok bool) {
	key := path[strings.LastIndexByte(path, '.')+1:]
	switch v := m[key].(type) {
	case nil:
		return "", true
	case string:
		return v, true
	default:
		w.add(path, "must be a string, got "+describe(v)+stringHint(v))
		return "", false
	}
}

// stringMapField reads m[key] as a map of strings, like Kubernetes labels.
func stringMapField(w *schemaWalker, m map[string]any, path string) map[string]string {
	key := path[strings.LastIndexByte(path, '.')+1:]
	switch v := m[key].(type) {
	case nil:
		return nil
	case map[string]any:
		out := make(map[string]string, len(v))
		for k, val := range v {
			switch s := val.(type) {
			case string:
				out[k] = s
			case nil:
				out[k] = ""
			default:
				w.add(path+"."+k, "must be a string, got "+describe(val)+stringHint(val))
			}
		}
		return out
	default:
		w.add(path, "must be an object of strings, got "+describe(v))
		return nil
	}
}

// metaNames is what a warning needs from the metadata of an object that is
// not decoded.
type metaNames struct{ name, namespace string }

func lenientMetadata(v any) metaNames {
	m, _ := v.(map[string]any)
	name, _ := m["name"].(string)
	ns, _ := m["namespace"].(string)
	return metaNames{name: name, namespace: ns}
}

// envelopeString reads a top-level string field.
func envelopeString(top map[string]any, key string, issues []issue) (string, []issue) {
	switch v := top[key].(type) {
	case nil:
		return "", issues
	case string:
		return v, issues
	default:
		return "", append(issues, issue{field: key, message: "must be a string, got " + describe(v)})
	}
}

// firstIssue picks the issue that comes first in the document: the one at
// the smallest line and column, then the first found.
func firstIssue(obj *Object, issues []issue) issue {
	t := cachedYAMLTree(obj.src, obj.srcFirstLine)
	if t != nil {
		for i := range issues {
			issues[i].line, issues[i].col = t.position(obj.srcPrefix + issues[i].field)
		}
	}
	sort.Slice(issues, func(a, b int) bool {
		x, y := issues[a], issues[b]
		switch {
		case x.line != y.line:
			return x.line < y.line
		case x.col != y.col:
			return x.col < y.col
		case x.field != y.field:
			return x.field < y.field
		}
		return x.message < y.message
	})
	first := issues[0]
	if first.refine != nil && t != nil {
		first.message = first.refine(t.scalar(obj.srcPrefix + first.field))
	}
	return first
}

// chunk is one raw document of a multi-document file. Its start line skips
// leading comments, which are often a license header or a description, so
// that messages point at the object itself.
type chunk struct {
	data         []byte
	firstLine    int    // line of the chunk's first byte
	startLine    int    // first line that is not blank or a comment
	nonBlankLine int    // first non-blank line
	err          string // a malformed separator line
	errLine      int
}

// splitDocuments splits data on separator lines the way k8s.io/apimachinery's
// YAMLReader does: a line starting with "---" followed only by whitespace (or
// a comment) ends a document. Any other line starting with "---" would make
// the YAML parser read a second document and silently drop it, so it is an
// error.
func splitDocuments(data []byte) []chunk {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 BOM
	var chunks []chunk
	cur := chunk{firstLine: 1}
	start := 0
	line := 1
	for pos := 0; pos < len(data); line++ {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			next = pos + end + 1
		}
		text := data[pos:next]
		if bytes.HasPrefix(text, []byte("---")) {
			rest := bytes.TrimSpace(text[3:])
			if len(rest) == 0 || rest[0] == '#' {
				cur.data = data[start:pos]
				chunks = append(chunks, cur.finish())
				cur = chunk{firstLine: line + 1}
				start = next
				pos = next
				continue
			}
			if cur.err == "" {
				cur.errLine = line
				cur.err = fmt.Sprintf("line %d: invalid document separator %q: only whitespace or a comment may follow ---", line, strings.TrimRight(string(text), "\r\n"))
			}
		}
		if trimmed := bytes.TrimSpace(text); cur.startLine == 0 && len(trimmed) > 0 && trimmed[0] != '#' {
			cur.startLine = line
		}
		if cur.nonBlankLine == 0 && len(bytes.TrimSpace(text)) > 0 {
			cur.nonBlankLine = line
		}
		pos = next
	}
	cur.data = data[start:]
	chunks = append(chunks, cur.finish())
	return chunks
}

// finish falls back to the first non-blank line as the start of a document
// that holds only comments (skipped unless it is malformed).
func (c chunk) finish() chunk {
	if c.startLine == 0 {
		c.startLine = c.nonBlankLine
	}
	return c
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

// yamlErrorMessage turns a YAML parse error into a message whose line
// numbers count from the start of the file, not of the document, and
// returns the first such line (0 if none).
func yamlErrorMessage(err error, firstLine int) (message string, line int) {
	message = yamlLineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, convErr := strconv.Atoi(m[len("line "):])
		if convErr != nil {
			return m
		}
		n += firstLine - 1
		if line == 0 {
			line = n
		}
		return "line " + strconv.Itoa(n)
	})
	return message, line
}

func unmarshalUseNumber(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}
