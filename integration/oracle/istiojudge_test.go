package oracle

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/crd"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/config/validation"
	istiolog "istio.io/istio/pkg/log"
	"istio.io/istio/pkg/test/env"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// verdict is one judge's answer for one document.
type verdict struct {
	accepted bool
	// message is the rejection reason ("" when accepted), or a note such as
	// the Istio validator's warning.
	message string
}

func (v verdict) String() string {
	if v.accepted {
		if v.message != "" {
			return "accepted (warning: " + oneLine(v.message) + ")"
		}
		return "accepted"
	}
	return "rejected: " + oneLine(v.message)
}

// istioKind describes how Istio validates one networking kind.
type istioKind struct {
	gvk      config.GroupVersionKind
	newSpec  func() proto.Message
	validate validation.ValidateFunc
}

// istioKinds are the kinds caddy-istio handles, keyed by kind name.
var istioKinds = map[string]istioKind{
	"VirtualService":  {gvk.VirtualService, func() proto.Message { return &networking.VirtualService{} }, validation.ValidateVirtualService},
	"DestinationRule": {gvk.DestinationRule, func() proto.Message { return &networking.DestinationRule{} }, validation.ValidateDestinationRule},
	"Gateway":         {gvk.Gateway, func() proto.Message { return &networking.Gateway{} }, validation.ValidateGateway},
	"ServiceEntry":    {gvk.ServiceEntry, func() proto.Message { return &networking.ServiceEntry{} }, validation.ValidateServiceEntry},
	"WorkloadEntry":   {gvk.WorkloadEntry, func() proto.Message { return &networking.WorkloadEntry{} }, validation.ValidateWorkloadEntry},
	"Sidecar":         {gvk.Sidecar, func() proto.Message { return &networking.Sidecar{} }, validation.ValidateSidecar},
}

// istioJudge answers "would kubectl apply accept this document?" the way a
// cluster with Istio installed does: the kube-apiserver's handling of a
// custom resource (object metadata checks, pruning of null values, the
// CRD's OpenAPI schema and CEL rules, with unknown fields rejected as
// kubectl's default strict field validation does), then Istio's validating
// webhook (pkg/config/validation).
type istioJudge struct {
	schema *crd.Validator
	// structural holds the CRD schemas, to prune nulls as the apiserver
	// does before validating (crd.Validator skips that step).
	structural map[schema.GroupVersionKind]*structuralschema.Structural
}

func newIstioJudge() (*istioJudge, error) {
	silenceIstioLogs()
	crdFile, err := istioCRDFile()
	if err != nil {
		return nil, err
	}
	v, err := crd.NewValidatorFromFilesWithOptions([]string{crdFile}, crd.WithoutCRDValidation())
	if err != nil {
		return nil, fmt.Errorf("loading istio CRDs from %s: %v", crdFile, err)
	}
	structural, err := loadStructuralSchemas(crdFile, "networking.istio.io")
	if err != nil {
		return nil, fmt.Errorf("loading istio CRDs from %s: %v", crdFile, err)
	}
	return &istioJudge{schema: v, structural: structural}, nil
}

// loadStructuralSchemas reads the structural schema of every version of
// every CRD of group in file.
func loadStructuralSchemas(file, group string) (map[schema.GroupVersionKind]*structuralschema.Structural, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[schema.GroupVersionKind]*structuralschema.Structural{}
	dec := kubeyaml.NewYAMLOrJSONDecoder(f, 512*1024)
	for {
		var crdv1 apiextensionsv1.CustomResourceDefinition
		if err := dec.Decode(&crdv1); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if crdv1.Kind != "CustomResourceDefinition" || crdv1.Spec.Group != group {
			continue
		}
		var internal apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&crdv1, &internal, nil); err != nil {
			return nil, err
		}
		for _, ver := range internal.Spec.Versions {
			// The conversion hoists a schema shared by all versions to
			// spec.validation.
			validation := ver.Schema
			if validation == nil {
				validation = internal.Spec.Validation
			}
			if validation == nil || validation.OpenAPIV3Schema == nil {
				continue
			}
			s, err := structuralschema.NewStructural(validation.OpenAPIV3Schema)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %v", internal.Name, ver.Name, err)
			}
			out[schema.GroupVersionKind{Group: group, Version: ver.Name, Kind: internal.Spec.Names.Kind}] = s
		}
	}
}

// silenceIstioLogs stops Istio's logger from printing validator warnings to
// stdout; the warnings are returned to us as values anyway.
func silenceIstioLogs() {
	for _, s := range istiolog.Scopes() {
		s.SetOutputLevel(istiolog.NoneLevel)
	}
}

// istioCRDFile finds crd-all.gen.yaml in the istio.io/istio module: via the
// source path compiled into Istio's test env package, else via `go list`
// (needed when the test binary was built with -trimpath).
func istioCRDFile() (string, error) {
	const rel = "manifests/charts/base/files/crd-all.gen.yaml"
	if f := filepath.Join(env.IstioSrc, rel); fileExists(f) {
		return f, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil {
		return "", fmt.Errorf("locating the istio.io/istio module: %v", err)
	}
	f := filepath.Join(strings.TrimSpace(string(out)), rel)
	if !fileExists(f) {
		return "", fmt.Errorf("istio CRD file %s not found", f)
	}
	return f, nil
}

func fileExists(name string) bool {
	st, err := os.Stat(name)
	return err == nil && !st.IsDir()
}

// judge returns Istio's verdict on one YAML document holding one object.
func (j *istioJudge) judge(doc []byte) verdict {
	// The apiserver: decode, check metadata, prune nulls, then the schema.
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(doc, obj); err != nil {
		return verdict{message: "apiserver decode: " + err.Error()}
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(defaultNamespace) // kubectl sends its current namespace
	}
	if errs := apivalidation.ValidateObjectMetaAccessor(obj, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")); len(errs) > 0 {
		return verdict{message: "apiserver metadata: " + errs.ToAggregate().Error()}
	}
	if s := j.structural[obj.GroupVersionKind()]; s != nil {
		structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj.Object, s)
	}
	if err := j.schema.ValidateCustomResource(obj); err != nil {
		return verdict{message: "crd schema: " + err.Error()}
	}

	// The webhook: the types' own UnmarshalJSON is lenient (unknown fields
	// dropped), as in istiod; the schema has already rejected those.
	kind, ok := istioKinds[obj.GetKind()]
	if !ok {
		return verdict{message: "not an istio networking kind: " + obj.GetKind()}
	}
	spec := kind.newSpec()
	if raw, ok := obj.Object["spec"]; ok {
		js, err := json.Marshal(raw)
		if err != nil {
			return verdict{message: "decode: " + err.Error()}
		}
		if err := json.Unmarshal(js, spec); err != nil {
			return verdict{message: "decode: " + err.Error()}
		}
	}
	cfg := config.Config{
		Meta: config.Meta{
			GroupVersionKind: kind.gvk,
			Name:             obj.GetName(),
			Namespace:        obj.GetNamespace(),
			Labels:           obj.GetLabels(),
			Annotations:      obj.GetAnnotations(),
			Domain:           "cluster.local",
		},
		Spec: spec,
	}
	warn, err := kind.validate(cfg)
	if err != nil {
		return verdict{message: "validation: " + err.Error()}
	}
	if warn != nil {
		return verdict{accepted: true, message: warn.Error()}
	}
	return verdict{accepted: true}
}

// defaultNamespace stands in for kubectl's current namespace when a
// document has none; both judges use it.
const defaultNamespace = "default"

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\n\t", " ")
	return strings.ReplaceAll(s, "\n", "; ")
}
