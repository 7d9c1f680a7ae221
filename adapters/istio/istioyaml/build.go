package istioyaml

import (
	"bytes"
	"encoding/json"

	"github.com/golang/protobuf/jsonpb"
	"google.golang.org/protobuf/proto"
)

// strictUnmarshaler is golang/protobuf's jsonpb with unknown fields refused:
// the decoder behind istio.io/api's own UnmarshalJSON (which reads Go-style
// durations such as "1.5s", unlike protojson), made strict. The schema walk
// has already checked the spec and located any problem; this builds the
// message.
var strictUnmarshaler = &jsonpb.Unmarshaler{}

// unmarshalStrict decodes the spec tree (the walked JSON value) into m.
func unmarshalStrict(spec map[string]any, m proto.Message) error {
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return strictUnmarshaler.Unmarshal(bytes.NewReader(raw), protoV1(m))
}
