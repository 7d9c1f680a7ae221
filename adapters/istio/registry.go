package istio

import (
	"fmt"
	"maps"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// service is a registry service with where it came from.
type service struct {
	*istioapp.Service
	obj   *istioyaml.Object
	field string // path of the host in obj: "metadata.name" or "spec.hosts[i]"
}

// hasPort reports whether the service has port number.
func (s *service) port(number uint32) *istioapp.ServicePort {
	for _, p := range s.Ports {
		if p.Number == number {
			return p
		}
	}
	return nil
}

// buildRegistry turns Kubernetes Services, ServiceEntries and
// WorkloadEntries into the istio app's services and workloads.
func (t *translator) buildRegistry() {
	for _, obj := range t.workloadEntries {
		we := obj.Spec.(*networking.WorkloadEntry)
		w := workloadOf(we)
		w.Name, w.Namespace = obj.Name, obj.Namespace
		t.warnUnusedWorkloadFields(obj, "spec", we)
		t.workloads = append(t.workloads, w)
	}
	for _, obj := range t.kubeServices {
		t.addKubeService(obj)
	}
	for _, obj := range t.serviceEntries {
		t.addServiceEntry(obj)
	}
}

// registryServices is the services list of the istio app.
func (t *translator) registryServices() []*istioapp.Service {
	out := make([]*istioapp.Service, 0, len(t.services))
	for _, s := range t.services {
		out = append(out, s.Service)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// addService adds s unless its hostname is already taken.
func (t *translator) addService(s *service) {
	if prev, dup := t.serviceByHost[s.Hostname]; dup {
		t.warn(s.obj, s.field, fmt.Sprintf("host %s is already defined by %s; this definition is ignored", s.Hostname, prev.obj.Ref()))
		return
	}
	t.serviceByHost[s.Hostname] = s
	t.services = append(t.services, s)
	if strings.HasPrefix(s.Hostname, "*") {
		t.wildcardServices = append(t.wildcardServices, s)
	}
}

// addKubeService adds a Kubernetes Service: hostname
// NAME.NS.svc.cluster.local, endpoints are the WorkloadEntries of its
// namespace that its selector picks (there are no pods here).
func (t *translator) addKubeService(obj *istioyaml.Object) {
	ks := obj.Service
	svc := &istioapp.Service{
		Hostname:   kubeServiceHostname(obj.Name, obj.Namespace),
		Namespace:  obj.Namespace,
		Resolution: "STATIC",
		Location:   "MESH_INTERNAL",
		Selector:   maps.Clone(ks.Selector),
	}
	if strings.EqualFold(ks.ClusterIP, "None") {
		// Istio gives headless services PASSTHROUGH clusters to the pod
		// the client resolved; here endpoints come from WorkloadEntries.
		t.warn(obj, "spec.clusterIP", "headless service: served like a normal service (load balanced over its endpoints)")
	}
	for i, p := range ks.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		port := &istioapp.ServicePort{
			Number:   uint32(p.Port),
			Name:     p.Name,
			Protocol: kubePortProtocol(p),
		}
		switch {
		case p.TargetPortIsInt:
			if p.TargetPortInt != 0 && p.TargetPortInt != p.Port {
				port.TargetPort = uint32(p.TargetPortInt)
			}
		case p.TargetPort != "":
			// A named targetPort names a container port; without pods, Istio
			// finds a WorkloadEntry's port by the service port name, which is
			// what the runtime does.
			if !t.workloadNamesPort(obj.Namespace, ks.Selector, p.Name) {
				t.warn(obj, field+".targetPort", fmt.Sprintf("named targetPort %q: endpoints use the WorkloadEntry port named %q (the service port name) and else port %d; no WorkloadEntry of this service names it", p.TargetPort, p.Name, p.Port))
			}
		}
		if port.Protocol == "UDP" {
			t.warn(obj, field+".protocol", "UDP ports are not served")
		}
		svc.Ports = append(svc.Ports, port)
	}
	t.addService(&service{Service: svc, obj: obj, field: "metadata.name"})
}

// workloadNamesPort reports whether a WorkloadEntry of namespace selected by
// selector has a port named portName.
func (t *translator) workloadNamesPort(namespace string, selector map[string]string, portName string) bool {
	if portName == "" || len(selector) == 0 {
		return false
	}
	for _, w := range t.workloads {
		if w.Namespace != namespace || !labelsContain(w.Labels, selector) {
			continue
		}
		if _, ok := w.Ports[portName]; ok {
			return true
		}
	}
	return false
}

// labelsContain reports whether labels has every key and value of want.
func labelsContain(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// addServiceEntry adds one service per host of a ServiceEntry. Istio does
// not expand short ServiceEntry hosts, and neither do we.
func (t *translator) addServiceEntry(obj *istioyaml.Object) {
	se := obj.Spec.(*networking.ServiceEntry)
	var ports []*istioapp.ServicePort
	for _, p := range se.GetPorts() {
		ports = append(ports, &istioapp.ServicePort{
			Number:     p.GetNumber(),
			Name:       p.GetName(),
			Protocol:   seProtocol(p.GetProtocol()),
			TargetPort: p.GetTargetPort(),
		})
	}
	for i, p := range ports {
		if p.Protocol == "UDP" {
			t.warn(obj, fmt.Sprintf("spec.ports[%d].protocol", i), "UDP ports are not served")
		}
	}
	var endpoints []*istioapp.Workload
	for i, we := range se.GetEndpoints() {
		endpoints = append(endpoints, workloadOf(we))
		t.warnUnusedWorkloadFields(obj, fmt.Sprintf("spec.endpoints[%d]", i), we)
	}
	var selector map[string]string
	if ws := se.GetWorkloadSelector(); ws != nil {
		selector = maps.Clone(ws.GetLabels())
		if selector == nil {
			// A present but empty selector selects every workload of the
			// namespace, as in Istio.
			selector = map[string]string{}
		}
	}
	if len(se.GetExportTo()) > 0 {
		t.warn(obj, "spec.exportTo", notImplemented+" (every client sees the service)")
	}
	// spec.subjectAltNames are the identities checked by ISTIO_MUTUAL
	// clusters of these hosts (serviceIdentities).
	for i, host := range se.GetHosts() {
		svc := &istioapp.Service{
			Hostname:   host,
			Namespace:  obj.Namespace,
			Ports:      clonePorts(ports),
			Resolution: se.GetResolution().String(),
			Location:   se.GetLocation().String(),
			Addresses:  append([]string(nil), se.GetAddresses()...),
			Endpoints:  endpoints,
			Selector:   selector,
		}
		t.addService(&service{Service: svc, obj: obj, field: fmt.Sprintf("spec.hosts[%d]", i)})
	}
}

func clonePorts(ports []*istioapp.ServicePort) []*istioapp.ServicePort {
	out := make([]*istioapp.ServicePort, len(ports))
	for i, p := range ports {
		c := *p
		out[i] = &c
	}
	return out
}

// warnUnusedWorkloadFields warns about the endpoint fields the runtime does
// not act on (network gateways are not supported). Weight and locality are
// used by the istio app's load balancing.
func (t *translator) warnUnusedWorkloadFields(obj *istioyaml.Object, path string, we *networking.WorkloadEntry) {
	if we.GetNetwork() != "" {
		t.warn(obj, path+".network", notImplemented+" (endpoints are dialled directly)")
	}
}

// workloadOf converts a WorkloadEntry spec.
func workloadOf(we *networking.WorkloadEntry) *istioapp.Workload {
	return &istioapp.Workload{
		Address:        we.GetAddress(),
		Ports:          maps.Clone(we.GetPorts()),
		Labels:         maps.Clone(we.GetLabels()),
		Weight:         we.GetWeight(),
		Locality:       we.GetLocality(),
		Network:        we.GetNetwork(),
		ServiceAccount: we.GetServiceAccount(),
	}
}

// Istio's protocol names (pkg/config/protocol), upper-cased.
var protocols = map[string]string{
	"tcp":        "TCP",
	"udp":        "UDP",
	"grpc":       "GRPC",
	"grpc-web":   "GRPC-WEB",
	"http":       "HTTP",
	"http_proxy": "HTTP_PROXY",
	"http2":      "HTTP2",
	"https":      "HTTPS",
	"tls":        "TLS",
	"mongo":      "MONGO",
	"redis":      "REDIS",
	"mysql":      "MYSQL",
}

// parseProtocol is Istio's protocol.Parse: case-insensitive, "" when
// unknown (Istio's "UnsupportedProtocol": sniffed, HTTP for our listener).
func parseProtocol(s string) string {
	return protocols[strings.ToLower(s)]
}

// seProtocol is the protocol of a ServiceEntry port: Istio's name for it,
// else the name upper-cased.
func seProtocol(s string) string {
	if p := parseProtocol(s); p != "" {
		return p
	}
	return strings.ToUpper(s)
}

// Ports whose unnamed protocol is TCP rather than sniffed (Istio's
// kube.wellKnownPorts: SMTP, DNS, MySQL, MongoDB).
var wellKnownTCPPorts = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// kubePortProtocol is Istio's kube.ConvertProtocol: UDP ports are UDP; else
// appProtocol, or the port name, decides by its prefix before "-"
// ("http-web" is HTTP, "grpc-web..." is GRPC-WEB).
func kubePortProtocol(p istioyaml.KubeServicePort) string {
	if strings.EqualFold(p.Protocol, "UDP") {
		return "UDP"
	}
	name := p.Name
	if p.AppProtocol != "" {
		name = p.AppProtocol
		switch name {
		case "kubernetes.io/h2c":
			return "HTTP2"
		case "kubernetes.io/ws":
			return "HTTP"
		case "kubernetes.io/wss":
			return "HTTPS"
		}
	}
	if len(name) >= len("grpc-web") && strings.EqualFold(name[:len("grpc-web")], "grpc-web") {
		return "GRPC-WEB"
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	proto := parseProtocol(name)
	if proto == "" && wellKnownTCPPorts[p.Port] {
		return "TCP"
	}
	return proto
}

// isHTTPProtocol reports whether a port of this protocol is served by the
// HTTP listeners: HTTP, HTTP2, GRPC, GRPC-WEB, or unset (Istio sniffs it;
// our listeners speak HTTP).
func isHTTPProtocol(proto string) bool {
	switch proto {
	case "", "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}
