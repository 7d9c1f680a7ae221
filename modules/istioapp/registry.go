package istioapp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Service resolutions (ServiceEntry.resolution).
const (
	resolutionNone          = "NONE"
	resolutionStatic        = "STATIC"
	resolutionDNS           = "DNS"
	resolutionDNSRoundRobin = "DNS_ROUND_ROBIN"
	resolutionDynamicDNS    = "DYNAMIC_DNS"
)

// unixScheme prefixes WorkloadEntry addresses that are unix sockets.
const unixScheme = "unix://"

// registry indexes the services and workloads of the configuration. It is
// built once at Provision and only read afterwards.
type registry struct {
	services map[string]*Service
	// workloads holds the standalone WorkloadEntries by namespace, in
	// configuration order so endpoint lists are stable.
	workloads map[string][]*Workload
}

// newRegistry indexes services by hostname and workloads by namespace, and
// rejects what the runtime cannot interpret.
func newRegistry(services []*Service, workloads []*Workload) (*registry, error) {
	reg := &registry{
		services:  make(map[string]*Service, len(services)),
		workloads: make(map[string][]*Workload),
	}
	for i, svc := range services {
		if svc == nil {
			return nil, fmt.Errorf("service %d: null", i)
		}
		if svc.Hostname == "" {
			return nil, fmt.Errorf("service %d: missing hostname", i)
		}
		if _, dup := reg.services[svc.Hostname]; dup {
			return nil, fmt.Errorf("service %q: defined more than once", svc.Hostname)
		}
		switch resolution(svc) {
		case resolutionNone, resolutionStatic, resolutionDNS, resolutionDNSRoundRobin, resolutionDynamicDNS:
		default:
			return nil, fmt.Errorf("service %q: unknown resolution %q", svc.Hostname, svc.Resolution)
		}
		seen := make(map[uint32]bool, len(svc.Ports))
		for j, p := range svc.Ports {
			if p == nil || p.Number == 0 || p.Number > 65535 {
				return nil, fmt.Errorf("service %q: port %d: number must be in 1..65535", svc.Hostname, j)
			}
			if p.TargetPort > 65535 {
				return nil, fmt.Errorf("service %q: port %d: target_port must be in 0..65535", svc.Hostname, p.Number)
			}
			if seen[p.Number] {
				return nil, fmt.Errorf("service %q: port %d: defined more than once", svc.Hostname, p.Number)
			}
			seen[p.Number] = true
		}
		for j, ep := range svc.Endpoints {
			if err := checkWorkload(ep); err != nil {
				return nil, fmt.Errorf("service %q: endpoint %d: %v", svc.Hostname, j, err)
			}
		}
		reg.services[svc.Hostname] = svc
	}
	for i, w := range workloads {
		if w == nil {
			return nil, fmt.Errorf("workload %d: null", i)
		}
		if err := checkWorkload(w); err != nil {
			return nil, fmt.Errorf("workload %d (%s/%s): %v", i, w.Namespace, w.Name, err)
		}
		reg.workloads[w.Namespace] = append(reg.workloads[w.Namespace], w)
	}
	return reg, nil
}

// checkWorkload rejects endpoints whose ports cannot be dialled. An empty
// address is allowed: it is an endpoint reached through a network gateway,
// which the runtime does not dial (see dialAddress).
func checkWorkload(w *Workload) error {
	if w == nil {
		return fmt.Errorf("null")
	}
	for name, n := range w.Ports {
		if n > 65535 {
			return fmt.Errorf("port %q: %d is not in 0..65535", name, n)
		}
	}
	return nil
}

// resolution returns the service's resolution, NONE when unset.
func resolution(svc *Service) string {
	if svc.Resolution == "" {
		return resolutionNone
	}
	return svc.Resolution
}

// port returns the service port with that number, or nil.
func (svc *Service) port(number uint32) *ServicePort {
	for _, p := range svc.Ports {
		if p.Number == number {
			return p
		}
	}
	return nil
}

// endpoints returns the service's endpoints: its inline endpoints, then the
// workloads of its namespace whose labels contain its selector.
func (reg *registry) endpoints(svc *Service) []*Workload {
	eps := append([]*Workload(nil), svc.Endpoints...)
	if svc.Selector == nil {
		return eps
	}
	for _, w := range reg.workloads[svc.Namespace] {
		if containsLabels(w.Labels, svc.Selector) {
			eps = append(eps, w)
		}
	}
	return eps
}

// endpointSet computes the upstreams of one service port narrowed to the
// endpoints whose labels contain subsetLabels (nil: all of them).
//
// A service without endpoints is resolved as Istio does: DNS and
// DNS_ROUND_ROBIN dial the service hostname; NONE and DYNAMIC_DNS forward to
// the host the client asked for (Envoy's original destination and dynamic
// forward proxy); STATIC has nothing to dial. Endpoints that exist but
// match no subset label give an empty set: the proxy answers 503.
func (reg *registry) endpointSet(svc *Service, port *ServicePort, subsetLabels map[string]string) *endpointSet {
	eps := reg.endpoints(svc)
	set := new(endpointSet)
	if len(eps) == 0 {
		target := strconv.FormatUint(uint64(defaultTargetPort(port)), 10)
		switch resolution(svc) {
		case resolutionDNS, resolutionDNSRoundRobin:
			if !strings.HasPrefix(svc.Hostname, "*") {
				set.dials = []string{net.JoinHostPort(svc.Hostname, target)}
				set.endpoints = []*Workload{{Address: svc.Hostname}}
			}
		case resolutionNone, resolutionDynamicDNS:
			set.originalDestinationPort = target
		}
		return set
	}
	for _, ep := range eps {
		if !containsLabels(ep.Labels, subsetLabels) {
			continue
		}
		if dial, ok := dialAddress(ep, port); ok {
			set.dials = append(set.dials, dial)
			set.endpoints = append(set.endpoints, ep)
		}
	}
	return set
}

// clusterSet is the endpoint set of cluster c, as its proxy uses it: the
// subset's endpoints of the service port, or, for Envoy's ORIGINAL_DST
// (PASSTHROUGH), none but the port to dial on the client's destination.
func (reg *registry) clusterSet(c *Cluster) (*endpointSet, error) {
	svc := reg.services[c.Service]
	if svc == nil {
		return nil, fmt.Errorf("unknown service %q", c.Service)
	}
	port := svc.port(c.Port)
	if port == nil {
		return nil, fmt.Errorf("service %q has no port %d", c.Service, c.Port)
	}
	if c.OriginalDestination {
		// Envoy's ORIGINAL_DST: the endpoints are not used
		return &endpointSet{originalDestinationPort: strconv.FormatUint(uint64(defaultTargetPort(port)), 10)}, nil
	}
	return reg.endpointSet(svc, port, c.Labels), nil
}

// Registry answers, outside a running app, what the app's registry answers
// inside it: the adapter's layer4 routes (caddy-l4 proxies with static
// upstreams) dial the endpoints the app's clusters would proxy to.
type Registry struct{ reg *registry }

// NewRegistry indexes services and workloads as the istio app does, with
// the same checks.
func NewRegistry(services []*Service, workloads []*Workload) (*Registry, error) {
	reg, err := newRegistry(services, workloads)
	if err != nil {
		return nil, err
	}
	return &Registry{reg: reg}, nil
}

// ClusterDials returns the addresses cluster c dials. When it dials the
// host the client asked for instead (PASSTHROUGH, or a NONE or DYNAMIC_DNS
// service without endpoints), dials is empty and forwardPort is the port
// to dial there. Both are empty for an unknown service or port.
func (r *Registry) ClusterDials(c *Cluster) (dials []string, forwardPort string) {
	set, err := r.reg.clusterSet(c)
	if err != nil {
		return nil, ""
	}
	return set.dials, set.originalDestinationPort
}

// endpointPort is the port of ep that serves the service port: the port the
// endpoint names for it, else the service's target port, else its number.
func endpointPort(ep *Workload, port *ServicePort) uint32 {
	if n, ok := ep.Ports[port.Name]; ok && n != 0 {
		return n
	}
	return defaultTargetPort(port)
}

// defaultTargetPort is the endpoint port when the endpoint names none.
func defaultTargetPort(port *ServicePort) uint32 {
	if port.TargetPort != 0 {
		return port.TargetPort
	}
	return port.Number
}

// dialAddress is the Caddy network address that reaches ep for the service
// port: host:port for IPs and DNS names (Go resolves names when it dials),
// unix//path for unix:///path sockets. ok is false for endpoints without an
// address.
func dialAddress(ep *Workload, port *ServicePort) (dial string, ok bool) {
	if ep.Address == "" {
		return "", false
	}
	if path, isUnix := strings.CutPrefix(ep.Address, unixScheme); isUnix {
		return "unix/" + path, true
	}
	return net.JoinHostPort(ep.Address, strconv.FormatUint(uint64(endpointPort(ep, port)), 10)), true
}

// containsLabels reports whether have has every key of want with the same value.
func containsLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}
