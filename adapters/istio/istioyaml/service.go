package istioyaml

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// decodeKubeService reads the fields of a core/v1 ServiceSpec that Istio's
// registry uses. Other ServiceSpec fields (type, sessionAffinity, ...) are
// ignored, as a Service exported from a cluster carries many.
func decodeKubeService(w *schemaWalker, spec any) *KubeService {
	svc := &KubeService{}
	m, _ := spec.(map[string]any)
	if m == nil {
		return svc
	}
	svc.Selector = stringMapField(w, m, "spec.selector")
	svc.ClusterIP, _ = stringField(w, m, "spec.clusterIP")

	switch ports := m["ports"].(type) {
	case nil:
	case []any:
		svc.Ports = make([]KubeServicePort, 0, len(ports))
		for i, p := range ports {
			path := "spec.ports[" + strconv.Itoa(i) + "]"
			pm, ok := p.(map[string]any)
			if !ok {
				w.add(path, "must be an object, got "+describe(p))
				continue
			}
			svc.Ports = append(svc.Ports, decodeServicePort(w, path, pm))
		}
	default:
		w.add("spec.ports", "must be an array, got "+describe(ports))
	}
	return svc
}

func decodeServicePort(w *schemaWalker, path string, m map[string]any) KubeServicePort {
	var p KubeServicePort
	p.Name, _ = stringField(w, m, path+".name")
	p.Protocol, _ = stringField(w, m, path+".protocol")
	if p.Protocol == "" {
		p.Protocol = "TCP" // the API server's default
	}
	p.AppProtocol, _ = stringField(w, m, path+".appProtocol")

	switch v := m["port"].(type) {
	case nil:
		w.add(path+".port", "port is required")
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil {
			w.add(path+".port", fmt.Sprintf("must be an integer (int32), got number %s", v))
		}
		p.Port = int32(n)
	default:
		w.add(path+".port", "must be an integer (int32), got "+describe(v))
	}

	// targetPort is an IntOrString: a JSON number is a port, a JSON string
	// the name of a container (or WorkloadEntry) port.
	switch v := m["targetPort"].(type) {
	case nil:
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 32)
		if err != nil {
			w.add(path+".targetPort", fmt.Sprintf("must be an integer (int32) or a port name, got number %s", v))
		}
		p.TargetPort = string(v)
		p.TargetPortInt = int32(n)
		p.TargetPortIsInt = true
	case string:
		p.TargetPort = v
	default:
		w.add(path+".targetPort", "must be an integer or a port name, got "+describe(v))
	}
	return p
}
