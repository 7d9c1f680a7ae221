package istiokube

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"

	"go.uber.org/zap"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/adapters/istio/validation"
)

// sourceFile names the API server as the "file" of objects in messages.
const sourceFile = "apiserver"

// listed is one object of an informer's cache.
type listed struct {
	kind string
	obj  any
}

// decodedObject is the conversion of one resourceVersion of an object.
type decodedObject struct {
	resourceVersion string
	problems        []string // why this resourceVersion is invalid

	// good is the last valid version of the object (this one when
	// problems is empty), goodVersion its resourceVersion; nil if none was.
	good        *istioyaml.Object
	goodVersion string
}

// convert turns the cached API objects into the adapter's objects, in the
// order Istio gives conflicting configs (oldest first, then by name and
// namespace), with the status of each. An object is decoded and validated
// by the adapter's own path (istioyaml.Decode, validation.Validate) once per
// resourceVersion; an invalid version is reported and its last valid
// version, if any, stays in the config.
func (w *watcher) convert(items []listed) ([]*istioyaml.Object, []ObjectStatus) {
	w.mu.Lock()
	defer w.mu.Unlock()

	sort.SliceStable(items, func(i, j int) bool {
		a, b := metaOf(items[i].obj), metaOf(items[j].obj)
		if ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp(); !ta.Equal(&tb) {
			return ta.Before(&tb)
		}
		if a.GetName() != b.GetName() {
			return a.GetName() < b.GetName()
		}
		return a.GetNamespace() < b.GetNamespace()
	})

	decoded := make(map[string]*decodedObject, len(items))
	var objs []*istioyaml.Object
	var status []ObjectStatus
	services := map[string]map[string]string{} // selectors of the valid Services that have one, by namespace/name
	var slices []*discoveryv1.EndpointSlice
	for _, it := range items {
		meta := metaOf(it.obj)
		st := ObjectStatus{Kind: it.kind, Namespace: meta.GetNamespace(), Name: meta.GetName(), ResourceVersion: meta.GetResourceVersion()}
		if slice, ok := it.obj.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, slice)
			status = append(status, st)
			continue
		}
		key := it.kind + "/" + meta.GetNamespace() + "/" + meta.GetName()
		d := w.decoded[key]
		if d == nil || d.resourceVersion != meta.GetResourceVersion() {
			prev := d
			d = decodeObject(it.kind, it.obj)
			if d.good == nil && prev != nil {
				// The last good version keeps serving, as it would
				// have had Istio's webhook refused the update.
				d.good, d.goodVersion = prev.good, prev.goodVersion
			}
		}
		decoded[key] = d
		if len(d.problems) > 0 {
			st.Problems = d.problems
			apiVersion := "networking.istio.io/v1"
			if it.kind == "Service" {
				apiVersion = "v1"
			}
			w.reportInvalid(it.kind, meta, apiVersion, d.problems)
		}
		if d.good != nil {
			st.ResourceVersion = d.goodVersion
			if len(d.problems) > 0 {
				st.RejectedVersion = d.resourceVersion
			}
			objs = append(objs, d.good)
			if ks := d.good.Service; ks != nil && len(ks.Selector) > 0 {
				services[meta.GetNamespace()+"/"+meta.GetName()] = ks.Selector
			}
		}
		status = append(status, st)
	}
	w.decoded = decoded
	for key := range w.reported {
		if decoded[key] == nil {
			delete(w.reported, key)
		}
	}
	objs = append(objs, endpointWorkloads(services, slices, w.logger)...)
	return objs, status
}

// metaOf is the ObjectMeta of an informer object.
func metaOf(o any) metav1.Object {
	if m, ok := o.(metav1.Object); ok {
		return m
	}
	return &metav1.ObjectMeta{}
}

// decodeObject converts one API object into the YAML document the adapter
// reads and decodes and validates it as a file would be.
func decodeObject(kind string, o any) *decodedObject {
	meta := metaOf(o)
	d := &decodedObject{resourceVersion: meta.GetResourceVersion()}
	doc, err := document(kind, o)
	if err != nil {
		d.problems = []string{fmt.Sprintf("%s %s/%s: converting: %v", kind, meta.GetNamespace(), meta.GetName(), err)}
		return d
	}
	objs, _, errs := istioyaml.Decode(sourceFile, doc, istioyaml.Options{DefaultNamespace: meta.GetNamespace()})
	for _, obj := range objs {
		_, e := validation.Validate(obj)
		errs = append(errs, e...)
	}
	if len(errs) > 0 || len(objs) != 1 {
		for _, p := range errs {
			d.problems = append(d.problems, p.Error())
		}
		if len(d.problems) == 0 {
			d.problems = []string{fmt.Sprintf("%s %s/%s: decoded into %d objects", kind, meta.GetNamespace(), meta.GetName(), len(objs))}
		}
		return d
	}
	d.good, d.goodVersion = objs[0], d.resourceVersion
	return d
}

// document is the object as a Kubernetes YAML (JSON) document: apiVersion,
// kind, the metadata the adapter reads, and spec.
func document(kind string, o any) ([]byte, error) {
	meta := metaOf(o)
	type objectMeta struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	doc := struct {
		APIVersion string     `json:"apiVersion"`
		Kind       string     `json:"kind"`
		Metadata   objectMeta `json:"metadata"`
		Spec       any        `json:"spec"`
	}{
		APIVersion: "networking.istio.io/v1",
		Kind:       kind,
		Metadata: objectMeta{
			Name: meta.GetName(), Namespace: meta.GetNamespace(),
			Labels: meta.GetLabels(), Annotations: withoutLastApplied(meta.GetAnnotations()),
		},
	}
	switch o := o.(type) {
	case *networkingv1.VirtualService:
		doc.Spec = &o.Spec
	case *networkingv1.DestinationRule:
		doc.Spec = &o.Spec
	case *networkingv1.Gateway:
		doc.Spec = &o.Spec
	case *networkingv1.ServiceEntry:
		doc.Spec = &o.Spec
	case *networkingv1.WorkloadEntry:
		doc.Spec = &o.Spec
	case *networkingv1.Sidecar:
		doc.Spec = &o.Spec
	case *corev1.Service:
		doc.APIVersion = "v1"
		doc.Spec = serviceSpec(&o.Spec)
	default:
		return nil, fmt.Errorf("unexpected object %T", o)
	}
	return json.Marshal(doc)
}

// withoutLastApplied drops kubectl's copy of the whole object, which the
// adapter has no use for.
func withoutLastApplied(a map[string]string) map[string]string {
	if _, ok := a[corev1.LastAppliedConfigAnnotation]; !ok {
		return a
	}
	a = maps.Clone(a)
	delete(a, corev1.LastAppliedConfigAnnotation)
	return a
}

// serviceSpec is the part of a Service spec the adapter reads.
func serviceSpec(s *corev1.ServiceSpec) map[string]any {
	spec := map[string]any{}
	if len(s.Selector) > 0 {
		spec["selector"] = s.Selector
	}
	if s.ClusterIP != "" {
		spec["clusterIP"] = s.ClusterIP
	}
	var ports []map[string]any
	for _, p := range s.Ports {
		port := map[string]any{"port": p.Port}
		if p.Name != "" {
			port["name"] = p.Name
		}
		if p.Protocol != "" {
			port["protocol"] = string(p.Protocol)
		}
		if p.AppProtocol != nil {
			port["appProtocol"] = *p.AppProtocol
		}
		if p.TargetPort.String() != "0" && p.TargetPort.String() != "" {
			port["targetPort"] = p.TargetPort
		}
		ports = append(ports, port)
	}
	if len(ports) > 0 {
		spec["ports"] = ports
	}
	return spec
}

// endpointWorkloads turns the ready endpoints of the EndpointSlices of the
// given Services into WorkloadEntries that the Service's selector picks:
// address, ports by the slice's port names (the Service's port names, as
// the adapter looks them up), and the Service's selector as labels. An
// EndpointSlice does not carry its pod's labels, so subsets by labels
// beyond the selector only pick WorkloadEntries.
func endpointWorkloads(services map[string]map[string]string, slices []*discoveryv1.EndpointSlice, logger *zap.Logger) []*istioyaml.Object {
	var out []*istioyaml.Object
	for _, slice := range slices {
		selector := services[slice.Namespace+"/"+slice.Labels[discoveryv1.LabelServiceName]]
		if selector == nil || slice.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := map[string]uint32{}
		for _, p := range slice.Ports {
			if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports[name] = uint32(*p.Port)
		}
		if len(ports) == 0 {
			continue
		}
		for i, ep := range slice.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for j, addr := range ep.Addresses {
				name := slice.Name + "-" + strconv.Itoa(i)
				if j > 0 {
					name += "-" + strconv.Itoa(j)
				}
				labels := maps.Clone(selector)
				out = append(out, &istioyaml.Object{
					File:       sourceFile,
					APIVersion: "networking.istio.io/v1",
					Kind:       "WorkloadEntry",
					Name:       name,
					Namespace:  slice.Namespace,
					Labels:     labels,
					Spec: &networking.WorkloadEntry{
						Address: addr,
						Ports:   maps.Clone(ports),
						Labels:  labels,
					},
				})
			}
		}
	}
	if len(out) > 0 {
		logger.Debug("endpoints from EndpointSlices", zap.Int("workloads", len(out)))
	}
	return out
}
