package istio

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// translator holds the state of one Translate call.
type translator struct {
	opts Options

	// Inputs by kind, in document order.
	virtualServices  []*virtualService
	destinationRules []*destinationRule
	gateways         []*gateway
	sidecars         []*sidecar
	kubeServices     []*istioyaml.Object
	serviceEntries   []*istioyaml.Object
	workloadEntries  []*istioyaml.Object

	// Registry, in document order; serviceByHost indexes services.
	services      []*service
	serviceByHost map[string]*service
	// wildcardServices are the services whose hostname starts with "*",
	// in document order, for the lookups of hosts they cover.
	wildcardServices []*service
	workloads        []*istioapp.Workload

	// mesh is this proxy's mesh identity and locality (see buildMesh).
	mesh *istioapp.Mesh

	// Clusters in creation order, indexed by name.
	clusters      []*istioapp.Cluster
	clusterByName map[string]*istioapp.Cluster
	// dialRegistry is the istio app's registry over the adapted services,
	// built when layer4 routes need their clusters' dial addresses.
	dialRegistry    *istioapp.Registry
	dialRegistryErr error

	// policies are the merged DestinationRules by host.
	policies []*hostPolicy

	// expanded caches the http routes of each VirtualService with its
	// delegates merged in.
	expanded map[*virtualService][]*sourcedRoute

	problems []istioyaml.Problem
	warned   map[warningKey]bool

	// layer4 collects the TLS passthrough and TCP listeners (layer4.go).
	layer4 *layer4State
}

type warningKey struct {
	obj            *istioyaml.Object
	field, message string
}

type virtualService struct {
	obj  *istioyaml.Object
	spec *networking.VirtualService
}

// ref is the VirtualService as "namespace/name", for route logs.
func (vs *virtualService) ref() string { return vs.obj.Namespace + "/" + vs.obj.Name }

type destinationRule struct {
	obj  *istioyaml.Object
	spec *networking.DestinationRule
	host string // spec.host expanded with the DestinationRule's namespace
}

type gateway struct {
	obj  *istioyaml.Object
	spec *networking.Gateway
}

// ref is the Gateway as "namespace/name", the form VirtualService gateway
// references are resolved to.
func (g *gateway) ref() string { return g.obj.Namespace + "/" + g.obj.Name }

type sidecar struct {
	obj  *istioyaml.Object
	spec *networking.Sidecar
}

func newTranslator(objs []*istioyaml.Object, opts Options) *translator {
	t := &translator{
		opts:          opts,
		serviceByHost: make(map[string]*service),
		clusterByName: make(map[string]*istioapp.Cluster),
		warned:        make(map[warningKey]bool),
		expanded:      make(map[*virtualService][]*sourcedRoute),
	}
	for _, obj := range t.dedupe(objs) {
		if obj.Service != nil {
			t.kubeServices = append(t.kubeServices, obj)
			continue
		}
		switch spec := obj.Spec.(type) {
		case *networking.VirtualService:
			if spec != nil {
				t.virtualServices = append(t.virtualServices, &virtualService{obj: obj, spec: spec})
			}
		case *networking.DestinationRule:
			if spec != nil {
				t.destinationRules = append(t.destinationRules, &destinationRule{obj: obj, spec: spec, host: expandHost(spec.GetHost(), obj.Namespace)})
			}
		case *networking.Gateway:
			if spec != nil {
				t.gateways = append(t.gateways, &gateway{obj: obj, spec: spec})
			}
		case *networking.Sidecar:
			if spec != nil {
				t.sidecars = append(t.sidecars, &sidecar{obj: obj, spec: spec})
			}
		case *networking.ServiceEntry:
			if spec != nil {
				t.serviceEntries = append(t.serviceEntries, obj)
			}
		case *networking.WorkloadEntry:
			if spec != nil {
				t.workloadEntries = append(t.workloadEntries, obj)
			}
		}
	}
	return t
}

// dedupe drops nil objects and, when several documents define the same
// object (kind, namespace and name), keeps the last definition at the
// place of the first, as applying the documents in order would.
func (t *translator) dedupe(objs []*istioyaml.Object) []*istioyaml.Object {
	out := make([]*istioyaml.Object, 0, len(objs))
	index := make(map[string]int)
	for _, obj := range objs {
		if obj == nil {
			continue
		}
		key := obj.Kind + " " + obj.Namespace + "/" + obj.Name
		if i, dup := index[key]; dup {
			prev := out[i]
			where := fmt.Sprintf("document %d", obj.Doc)
			if obj.File != prev.File {
				where = fmt.Sprintf("%s, document %d", obj.File, obj.Doc)
			}
			t.warn(prev, "metadata.name", "replaced by the definition in "+where+" (same kind, namespace and name)")
			out[i] = obj
			continue
		}
		index[key] = len(out)
		out = append(out, obj)
	}
	return out
}

// warn records a warning about field of obj, once: the same route or
// policy is translated for several listeners, but is reported once.
func (t *translator) warn(obj *istioyaml.Object, field, message string) {
	key := warningKey{obj, field, message}
	if t.warned[key] {
		return
	}
	t.warned[key] = true
	p := istioyaml.ProblemFor(obj, field, message)
	p.Line = obj.LineOf(field)
	t.problems = append(t.problems, p)
}

// notImplemented is the message for a field that is translated to nothing.
const notImplemented = "not implemented yet; ignored"
