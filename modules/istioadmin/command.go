package istioadmin

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "istio",
		Usage: "[routes|clusters|endpoints|config|ui] [--json] [--address <admin>] [--listen <addr>]",
		Short: "Shows the live istio routes, clusters and endpoints of a running Caddy",
		Long: `
Prints what the running Caddy instance made of its Istio configuration, read
live from its admin API (the admin.api.istio endpoints), as tables or, with
--json, as the endpoints' JSON:

  routes     per listener and virtual host, the routes in order: match,
             destinations and split weights (GET /istio/routes)
  clusters   clusters with load balancer, TLS mode, connection pool, outlier
             detection, endpoint health and requests in flight (/istio/clusters)
  endpoints  per cluster, each endpoint's health (ejected until when, ejection
             count), weight, locality, workload and requests in flight
             (/istio/endpoints)
  config     the Istio objects that make up the running configuration: with
             istio_kube, each object from the API server with its
             resourceVersion and, if invalid, its problems and the
             rejected version; else those the configuration records
             (/istio/config)
  ui         serves the live web page on --listen (default 127.0.0.1:0, a
             free port) and forwards its reads to the admin API; browsers
             cannot open the admin endpoint's /istio/ui directly on a
             loopback admin address, because Caddy's admin refuses browser
             navigations without an allowed Origin

The default is routes. The admin address is --address if given, else the
"admin" listen address of --config (with --adapter), else the default
(CADDY_ADMIN or localhost:2019), as for caddy reload.
`,
		Flags: func() *flag.FlagSet {
			fs := flag.NewFlagSet("istio", flag.ExitOnError)
			fs.Bool("json", false, "Print the admin endpoint's JSON instead of a table")
			fs.String("address", "", "Address of the administration API endpoint")
			fs.String("config", "", "Configuration file to read the admin address from")
			fs.String("adapter", "", "Name of the adapter of --config")
			fs.String("listen", "127.0.0.1:0", "Address the ui subcommand serves the page on")
			return fs
		}(),
		Func: cmdIstio,
	})
}

// views maps the subcommands to their admin paths.
var views = map[string]string{
	"routes":    "/istio/routes",
	"clusters":  "/istio/clusters",
	"endpoints": "/istio/endpoints",
	"config":    "/istio/config",
}

func cmdIstio(fl caddycmd.Flags) (int, error) {
	view := "routes"
	switch args := fl.Args(); len(args) {
	case 0:
	case 1:
		view = args[0]
	default:
		return fail(fmt.Errorf("one view expected, got %q", args))
	}
	adminAddr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return fail(fmt.Errorf("finding the admin address: %v", err))
	}
	get := func(path string) (*http.Response, error) {
		return caddycmd.AdminAPIRequest(adminAddr, http.MethodGet, path, nil, nil)
	}
	if view == "ui" {
		return serveUI(fl.String("listen"), get, os.Stdout)
	}
	path, ok := views[view]
	if !ok {
		return fail(fmt.Errorf("unknown view %q: want routes, clusters, endpoints, config or ui", view))
	}
	resp, err := get(path)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fail(fmt.Errorf("reading %s: %v", path, err))
	}
	if fl.Bool("json") {
		_, err := os.Stdout.Write(body)
		return 0, err
	}
	if err := printTable(os.Stdout, view, body); err != nil {
		return fail(err)
	}
	return 0, nil
}

// fail is the exit status of a failed command.
func fail(err error) (int, error) { return caddy.ExitCodeFailedStartup, err }

// serveUI serves the page on listen until SIGINT or SIGTERM.
func serveUI(listen string, get adminGetter, out io.Writer) (int, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fail(fmt.Errorf("listening for the ui: %v", err))
	}
	srv := &http.Server{Handler: newUIHandler(get), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "istio ui: http://%s/istio/ui\n", ln.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-stop:
		_ = srv.Close()
		return 0, nil
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return 0, nil
		}
		return fail(err)
	}
}

// printTable prints the JSON body of a view as a table.
func printTable(out io.Writer, view string, body []byte) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	var err error
	switch view {
	case "routes":
		err = printRoutes(tw, body)
	case "clusters":
		err = printClusters(tw, body)
	case "endpoints":
		err = printEndpoints(tw, body)
	case "config":
		err = printConfig(tw, body)
	}
	if err != nil {
		return err
	}
	return tw.Flush()
}

func printRoutes(w io.Writer, body []byte) error {
	var resp RoutesResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decoding routes: %v", err)
	}
	fmt.Fprintln(w, "LISTENER\tVIRTUAL HOST\tDOMAINS\t#\tMATCH\tACTION\tVIRTUAL SERVICE")
	for _, srv := range resp.Servers {
		listener := srv.Server
		if len(srv.Listen) > 0 {
			listener += " " + strings.Join(srv.Listen, ",")
		}
		for _, h := range srv.Handlers {
			for _, vh := range h.VirtualHosts {
				for i, rt := range vh.Routes {
					match := "any"
					if len(rt.Match) > 0 {
						match = strings.Join(rt.Match, " || ")
					}
					var action string
					switch rt.Action {
					case "redirect":
						action = "redirect " + rt.Redirect
					case "direct_response":
						action = "direct_response " + strconv.Itoa(rt.DirectResponse)
					default:
						var dests []string
						for _, d := range rt.Destinations {
							s := d.Cluster + " " + strconv.FormatFloat(d.Percent, 'f', -1, 64) + "%"
							if !d.Found {
								s += " (no cluster)"
							}
							dests = append(dests, s)
						}
						action = strings.Join(dests, ", ")
					}
					if len(rt.Features) > 0 {
						action += " [" + strings.Join(rt.Features, " ") + "]"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", listener, vh.Name, domainsSummary(vh.Domains),
						i+1, match, action, dash(rt.VirtualService))
				}
			}
		}
	}
	return nil
}

func printClusters(w io.Writer, body []byte) error {
	var resp ClustersResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decoding clusters: %v", err)
	}
	fmt.Fprintln(w, "CLUSTER\tSERVICE FQDN\tPORT\tSUBSET\tLB\tTLS\tHEALTHY\tEJECTED\tIN FLIGHT\tOUTLIER DETECTION\tCONNECTION POOL")
	for _, c := range resp.Clusters {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\n", c.Name, c.Service, c.Port, dash(c.Subset),
			c.Policy.LoadBalancer, c.Policy.TLSMode, c.Healthy, c.Endpoints, c.Ejected, c.InFlight,
			outlierSummary(c.Policy.OutlierDetection), poolSummary(c.Policy.ConnectionPool))
	}
	return nil
}

func printEndpoints(w io.Writer, body []byte) error {
	var resp EndpointsResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decoding endpoints: %v", err)
	}
	fmt.Fprintln(w, "ENDPOINT\tHEALTH\tEJECTED UNTIL\tEJECTIONS\tIN FLIGHT\tWEIGHT\tLOCALITY\tWORKLOAD\tCLUSTER")
	for _, c := range resp.Clusters {
		for _, ep := range c.Endpoints {
			until := "-"
			if ep.EjectedUntil != nil {
				until = ep.EjectedUntil.Local().Format(time.TimeOnly)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", ep.Address, ep.Health, until, ep.Ejections, ep.InFlight,
				ep.Weight, dash(ep.Locality), dash(ep.Workload), c.Cluster)
		}
	}
	return nil
}

func printConfig(w io.Writer, body []byte) error {
	var resp ConfigResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decoding config: %v", err)
	}
	fmt.Fprintln(w, "KIND\tNAMESPACE\tNAME\tRESOURCEVERSION\tSTATUS")
	for _, o := range resp.Objects {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", o.Kind, dash(o.Namespace), o.Name, dash(o.ResourceVersion), o.Status())
	}
	if len(resp.NotRecorded) > 0 {
		fmt.Fprintf(w, "(not recorded in the running configuration: %s)\n", strings.Join(resp.NotRecorded, ", "))
	}
	return nil
}

// outlierSummary is a short form of outlier detection settings.
func outlierSummary(od *istioapp.OutlierDetection) string {
	if od == nil {
		return "-"
	}
	var parts []string
	if od.Consecutive5xxErrors > 0 {
		parts = append(parts, fmt.Sprintf("5xx=%d", od.Consecutive5xxErrors))
	}
	if od.ConsecutiveGatewayErrors > 0 {
		parts = append(parts, fmt.Sprintf("gateway=%d", od.ConsecutiveGatewayErrors))
	}
	if od.ConsecutiveLocalOriginFailures > 0 {
		parts = append(parts, fmt.Sprintf("local=%d", od.ConsecutiveLocalOriginFailures))
	}
	parts = append(parts,
		"interval="+time.Duration(od.Interval).String(),
		"base="+time.Duration(od.BaseEjectionTime).String(),
		fmt.Sprintf("max=%d%%", od.MaxEjectionPercent))
	return strings.Join(parts, " ")
}

// poolSummary is a short form of connection pool limits.
func poolSummary(cp *istioapp.ConnectionPool) string {
	if cp == nil {
		return "-"
	}
	limits := map[string]uint32{
		"maxConnections":           cp.MaxConnections,
		"maxPendingRequests":       cp.MaxPendingRequests,
		"maxRequests":              cp.MaxRequests,
		"maxRetries":               cp.MaxRetries,
		"maxRequestsPerConnection": cp.MaxRequestsPerConnection,
	}
	var parts []string
	for name, v := range limits {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", name, v))
		}
	}
	sort.Strings(parts)
	if cp.MaxConnectionDuration > 0 {
		parts = append(parts, "maxConnectionDuration="+time.Duration(cp.MaxConnectionDuration).String())
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// domainsSummary lists the first two domains and how many more, as
// istioctl proxy-config routes does.
func domainsSummary(domains []string) string {
	if len(domains) <= 2 {
		return strings.Join(domains, ",")
	}
	return fmt.Sprintf("%s +%d more", strings.Join(domains[:2], ","), len(domains)-2)
}

// dash stands for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
