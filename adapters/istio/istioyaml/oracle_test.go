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
	var top map[string]json.RawMessage
	if err := json.Unmarshal(j, &top); err != nil {
		return err
	}
	// Walk down to a List item: items[i].items[j]...
	for prefix := o.pathPrefix; prefix != ""; {
		idx := strings.TrimPrefix(prefix, "items[")
		end := strings.Index(idx, "].")
		i, _ := strconv.Atoi(idx[:end])
		prefix = idx[end+2:]
		var items []json.RawMessage
		if err := json.Unmarshal(top["items"], &items); err != nil {
			return err
		}
		top = nil
		if err := json.Unmarshal(items[i], &top); err != nil {
			return err
		}
	}
	want := o.Spec.ProtoReflect().New().Interface()
	if spec := top["spec"]; len(spec) > 0 {
		if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(spec), protoV1(want)); err != nil {
			return fmt.Errorf("strict jsonpb rejects what Decode accepted: %v", err)
		}
	}
	if !proto.Equal(o.Spec, want) {
		return fmt.Errorf("Decode built %v\nstrict jsonpb gives %v", o.Spec, want)
	}
	return nil
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
