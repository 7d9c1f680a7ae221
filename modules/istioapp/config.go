package istioapp

import "encoding/json"

// This file holds the JSON configuration types of the istio app: the contract
// between the adapter (which writes them) and the runtime (which reads them).

// Service is a service of the registry: a ServiceEntry host, or a Kubernetes
// Service (hostname NAME.NAMESPACE.svc.cluster.local).
type Service struct {
	// Hostname is the fully qualified host, e.g. reviews.default.svc.cluster.local,
	// or an external name such as api.example.com. Wildcards (*.example.com) are
	// allowed for ServiceEntry hosts.
	Hostname string `json:"hostname"`

	// Namespace of the ServiceEntry or Service that declared this host.
	Namespace string `json:"namespace,omitempty"`

	// Ports of the service.
	Ports []*ServicePort `json:"ports,omitempty"`

	// Resolution is how endpoints are found: NONE (forward to the address the
	// client asked for), STATIC (endpoint addresses are IPs), DNS (endpoint
	// addresses, or the hostname itself when there are no endpoints, are
	// resolved at connect time), DNS_ROUND_ROBIN (as DNS) or DYNAMIC_DNS
	// (the host the client asked for, resolved at connect time).
	// Kubernetes Services are STATIC. Default: NONE.
	//
	// At runtime a service with endpoints always dials them (whatever the
	// resolution); without endpoints, NONE and DYNAMIC_DNS dial the request's
	// host (port stripped) on the target port, DNS and DNS_ROUND_ROBIN dial
	// hostname:target port, and STATIC has nothing to dial (503).
	Resolution string `json:"resolution,omitempty"`

	// Location is MESH_EXTERNAL or MESH_INTERNAL. Default: MESH_EXTERNAL.
	Location string `json:"location,omitempty"`

	// Addresses are the virtual IPs or CIDRs of the service.
	Addresses []string `json:"addresses,omitempty"`

	// Endpoints listed inline (ServiceEntry.endpoints).
	Endpoints []*Workload `json:"endpoints,omitempty"`

	// Selector picks Workloads of the same namespace by their labels
	// (ServiceEntry.workloadSelector.labels, or a Kubernetes Service's
	// spec.selector). Nil selects nothing.
	Selector map[string]string `json:"selector,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Number   uint32 `json:"number"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"` // HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, ... (upper case)

	// TargetPort is the endpoint port when an endpoint does not name one
	// for this port's name. 0 means the same as Number.
	TargetPort uint32 `json:"target_port,omitempty"`
}

// Workload is an endpoint: a WorkloadEntry (standalone or inline in a
// ServiceEntry).
type Workload struct {
	// Name and Namespace of the WorkloadEntry (empty for inline endpoints).
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`

	// Address is an IP, a DNS name (resolved at connect time) or unix:///path.
	Address string `json:"address"`

	// Ports maps a service port name to the endpoint's port number.
	Ports map[string]uint32 `json:"ports,omitempty"`

	Labels         map[string]string `json:"labels,omitempty"`
	Weight         uint32            `json:"weight,omitempty"`
	Locality       string            `json:"locality,omitempty"`
	Network        string            `json:"network,omitempty"`
	ServiceAccount string            `json:"service_account,omitempty"`
}

// Cluster is what Envoy calls a cluster: the endpoints of one service port,
// optionally narrowed to a DestinationRule subset, with the traffic policy
// that applies to them, proxied by one Caddy reverse_proxy handler.
type Cluster struct {
	// Name is Istio's cluster name: outbound|PORT|SUBSET|HOST (SUBSET empty
	// for the whole service), e.g. outbound|9080|v1|reviews.default.svc.cluster.local.
	Name string `json:"name"`

	// Service is the Hostname of the registry service whose endpoints this
	// cluster balances over.
	Service string `json:"service"`

	// Port is the service port number.
	Port uint32 `json:"port"`

	// Subset is the DestinationRule subset name, "" for the whole service.
	Subset string `json:"subset,omitempty"`

	// Labels of the subset: an endpoint belongs to the cluster when its
	// labels contain all of these.
	Labels map[string]string `json:"labels,omitempty"`

	// Proxy is the configuration of the http.handlers.reverse_proxy handler
	// that proxies to this cluster (transport, load balancing, headers). Its
	// upstreams are filled in at request time from the registry, so it must
	// set neither "upstreams" nor "dynamic_upstreams". Default: a
	// reverse_proxy with Caddy's defaults.
	Proxy json.RawMessage `json:"proxy,omitempty"`
}

// The app's own JSON (App in istioapp.go) has three fields: `services`
// ([]*Service), `workloads` ([]*Workload, standalone WorkloadEntries) and
// `clusters` ([]*Cluster).
