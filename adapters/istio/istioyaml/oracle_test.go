package istioyaml

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/golang/protobuf/jsonpb"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// checkAgainstJSONPB decodes o's spec again with strict golang/protobuf
// jsonpb, the decoder istio.io/api itself uses, and reports any difference
// from the message Decode built.
func checkAgainstJSONPB(o *Object) error {
	if o.Spec == nil {
		return nil
	}
	j, err := yaml.YAMLToJSON(o.src)
	if err != nil {
		return fmt.Errorf("YAMLToJSON: %v", err)
	}
	// Walk down to the object: "[0]." for an item cut out of a List,
	// "items[i]." for an item of a flow-style List.
	raw := json.RawMessage(j)
	for _, seg := range strings.Split(strings.TrimSuffix(o.srcPrefix, "."), ".") {
		if seg == "" {
			continue
		}
		name, index, _ := strings.Cut(strings.TrimSuffix(seg, "]"), "[")
		if name != "" {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			raw = m[name]
		}
		i, _ := strconv.Atoi(index)
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return err
		}
		raw = items[i]
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	want := o.Spec.ProtoReflect().New().Interface()
	if spec := top["spec"]; len(spec) > 0 {
		// kube-apiserver prunes null fields and map values first; jsonpb
		// would add a zero entry for a null map value.
		var tree any
		if err := unmarshalUseNumber(spec, &tree); err != nil {
			return err
		}
		spec, err = json.Marshal(pruneNulls(tree))
		if err != nil {
			return err
		}
		if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(spec), protoV1(want)); err != nil {
			return fmt.Errorf("strict jsonpb rejects what Decode accepted: %v", err)
		}
	}
	if !proto.Equal(o.Spec, want) {
		return fmt.Errorf("Decode built %v\nstrict jsonpb gives %v", o.Spec, want)
	}
	return nil
}

// pruneNulls drops the null values of every JSON object in v (the
// networking kinds have no google.protobuf.Value field, where null would be
// a value).
func pruneNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, elem := range x {
			if elem == nil {
				delete(x, k)
			} else {
				pruneNulls(elem)
			}
		}
	case []any:
		for _, elem := range x {
			pruneNulls(elem)
		}
	}
	return v
}

// checkTreeAgainstYAMLToJSON checks that yamlToTree reads a document as
// sigs.k8s.io/yaml.YAMLToJSON and a json.Decoder with UseNumber do.
func checkTreeAgainstYAMLToJSON(doc []byte) error {
	got, gotErr := yamlToTree(doc)
	j, wantErr := yaml.YAMLToJSON(doc)
	if (gotErr != nil) != (wantErr != nil) {
		return fmt.Errorf("yamlToTree error %v, YAMLToJSON error %v", gotErr, wantErr)
	}
	if wantErr != nil {
		if gotErr.Error() != wantErr.Error() {
			return fmt.Errorf("yamlToTree error %q, YAMLToJSON error %q", gotErr, wantErr)
		}
		return nil
	}
	var want any
	if err := unmarshalUseNumber(j, &want); err != nil {
		return err
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("yamlToTree gives %#v\nYAMLToJSON gives %#v", got, want)
	}
	return nil
}

// checkListCut checks that the items blockListItems cuts out of a List
// document read as the document's items and start where the full parse
// says they do.
func checkListCut(c chunk) error {
	root, err := yamlToTree(c.data)
	if err != nil {
		return nil
	}
	top, _ := root.(map[string]any)
	items, _ := top["items"].([]any)
	spans := blockListItems(source{data: c.data, firstLine: c.firstLine, line: c.startLine}, len(items))
	if spans == nil {
		return nil
	}
	tree := parseYAMLTree(c.data, c.firstLine)
	for i, span := range spans {
		cut, err := yamlToTree(span.data)
		if err != nil {
			return fmt.Errorf("item %d cut at line %d does not parse: %v", i, span.line, err)
		}
		list, _ := cut.([]any)
		if len(list) != 1 || !reflect.DeepEqual(list[0], items[i]) {
			return fmt.Errorf("item %d cut at line %d reads %#v, want %#v", i, span.line, cut, items[i])
		}
		if tree != nil {
			if line, _ := tree.position("items[" + strconv.Itoa(i) + "]"); line != span.line {
				return fmt.Errorf("item %d cut at line %d, starts at line %d", i, span.line, line)
			}
		}
	}
	return nil
}
