package istio

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-istio/caddy-istio/modules/istioegress"
	"github.com/caddy-istio/caddy-istio/modules/istioroute"
)

// adapted is the adapter's output decoded for assertions.
type adapted struct {
	app     appConfig
	servers map[string]adaptedServer
}

type adaptedServer struct {
	listen string
	vhosts []*istioroute.VirtualHost
	// egress is the istio_egress handler in front of a mesh listener's
	// routes, nil on other servers.
	egress *istioegress.Config
}

// vhost returns the virtual host named name of server, or nil.
func (a *adapted) vhost(server, name string) *istioroute.VirtualHost {
	for _, vh := range a.servers[server].vhosts {
		if vh.Name == name {
			return vh
		}
	}
	return nil
}

// adaptInline adapts input (YAML documents) and returns the decoded
// output and the warnings as "field: message" lines (without the resource
// name).
func adaptInline(t *testing.T, input string) (*adapted, []string) {
	t.Helper()
	out, warnings, err := Adapter{}.Adapt([]byte(strings.TrimSpace(input)+"\n"), nil)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var raw struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
					Routes []struct {
						Handle []struct {
							Handler      string                    `json:"handler"`
							VirtualHosts []*istioroute.VirtualHost `json:"virtual_hosts"`
							istioegress.Config
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
			Istio appConfig `json:"istio"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("decoding output: %v\n%s", err, out)
	}
	a := &adapted{app: raw.Apps.Istio, servers: make(map[string]adaptedServer)}
	for name, s := range raw.Apps.HTTP.Servers {
		var egress *istioegress.Config
		if len(s.Routes) == 1 && len(s.Routes[0].Handle) == 2 && s.Routes[0].Handle[0].Handler == "istio_egress" {
			// mesh listeners: istio_egress, then istio_route, in one route
			egress = &s.Routes[0].Handle[0].Config
			s.Routes[0].Handle = s.Routes[0].Handle[1:]
		}
		if len(s.Listen) != 1 || len(s.Routes) != 1 || len(s.Routes[0].Handle) != 1 || s.Routes[0].Handle[0].Handler != "istio_route" {
			t.Fatalf("server %s: want one listen address and one route of istio_route (after istio_egress on mesh listeners), got %s", name, out)
		}
		a.servers[name] = adaptedServer{listen: s.Listen[0], vhosts: s.Routes[0].Handle[0].VirtualHosts, egress: egress}
	}
	var ws []string
	resource := regexp.MustCompile(`^[A-Za-z]+ [^ /]*/[^ :]*: `)
	for _, w := range warnings {
		ws = append(ws, w.Directive+": "+resource.ReplaceAllString(w.Message, ""))
	}
	return a, ws
}

// vhostSummary renders the virtual hosts of a server as
// "name=domain,domain" entries, for compact comparisons.
func vhostSummary(s adaptedServer) []string {
	var out []string
	for _, vh := range s.vhosts {
		out = append(out, vh.Name+"="+strings.Join(vh.Domains, ","))
	}
	return out
}

// routeSummary renders routes as "match -> clusters" strings.
func routeSummary(routes []*istioroute.Route) []string {
	var out []string
	for _, r := range routes {
		var m []string
		for _, alt := range r.Match {
			switch {
			case alt.URI != nil && alt.URI.Prefix != nil:
				m = append(m, "prefix "+*alt.URI.Prefix)
			case alt.URI != nil && alt.URI.Exact != nil:
				m = append(m, "exact "+*alt.URI.Exact)
			case alt.URI != nil && alt.URI.Regex != nil:
				m = append(m, "regex "+*alt.URI.Regex)
			default:
				m = append(m, "other")
			}
		}
		match := "*"
		if len(m) > 0 {
			match = strings.Join(m, "|")
		}
		var dst []string
		for _, d := range r.Route {
			dst = append(dst, d.Cluster)
		}
		switch {
		case r.Redirect != nil:
			dst = append(dst, "redirect")
		case r.DirectResponse != nil:
			dst = append(dst, "direct")
		}
		out = append(out, match+" -> "+strings.Join(dst, ","))
	}
	return out
}

// hasWarning reports whether one of warnings contains all parts.
func hasWarning(warnings []string, parts ...string) bool {
	for _, w := range warnings {
		ok := true
		for _, p := range parts {
			if !strings.Contains(w, p) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
