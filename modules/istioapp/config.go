package istioapp

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
)

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

	// OriginalDestination forwards each request to the host the client
	// asked for (its Host, on the cluster's target port) instead of
	// balancing over the endpoints: DestinationRule loadBalancer.simple
	// PASSTHROUGH, Envoy's ORIGINAL_DST cluster. Caddy has no intercepted
	// connections, so the requested host stands for the original
	// destination, as for a service with resolution NONE.
	OriginalDestination bool `json:"original_destination,omitempty"`

	// ConnectionPool holds the limits of Envoy's circuit breakers and the
	// per-connection limits Caddy's transport lacks (DestinationRule
	// connectionPool). Transport settings Caddy has (dial_timeout,
	// keep_alive, max_conns_per_host, versions) are in Proxy. Nil: no
	// limits.
	ConnectionPool *ConnectionPool `json:"connection_pool,omitempty"`

	// OutlierDetection ejects endpoints that fail (DestinationRule
	// outlierDetection), with Envoy's semantics. Nil: off.
	OutlierDetection *OutlierDetection `json:"outlier_detection,omitempty"`

	// TLS is what the cluster's upstream TLS needs beyond the reverse_proxy
	// transport's tls settings in Proxy: the mesh identity (ISTIO_MUTUAL)
	// and subject alternative name checks. Nil: the transport's settings
	// alone.
	TLS *UpstreamTLS `json:"tls,omitempty"`

	// Locality spreads or fails over load by endpoint locality
	// (DestinationRule loadBalancer.localityLbSetting). Nil: endpoints are
	// balanced regardless of locality.
	Locality *LocalityLB `json:"locality,omitempty"`

	// Warmup ramps the share of a newly added endpoint up over a window
	// (Envoy's slow start; DestinationRule loadBalancer.warmup or
	// warmupDurationSecs). Nil: off.
	Warmup *Warmup `json:"warmup,omitempty"`

	// Tunnel sends each connection through an HTTP CONNECT tunnel that the
	// cluster's endpoints (proxies) open to the target (DestinationRule
	// tunnel). Nil: connect directly.
	Tunnel *Tunnel `json:"tunnel,omitempty"`

	// RetryBudget caps the retries in progress to a share of the active
	// requests (DestinationRule retryBudget); when set it replaces
	// ConnectionPool.MaxRetries, as in Envoy. Nil: no budget.
	RetryBudget *RetryBudget `json:"retry_budget,omitempty"`
}

// Tunnel is an HTTP CONNECT tunnel through the cluster's endpoints.
type Tunnel struct {
	// TargetHost and TargetPort are what the CONNECT request asks for.
	TargetHost string `json:"target_host"`
	TargetPort uint32 `json:"target_port"`
}

// RetryBudget is Envoy's retry budget: at most max(MinRetryConcurrency,
// Percent% of active requests) retries in progress.
type RetryBudget struct {
	Percent             *float64 `json:"percent,omitempty"`               // default 20; 0 is 0
	MinRetryConcurrency uint32   `json:"min_retry_concurrency,omitempty"` // default 3
}

// ConnectionPool is a cluster's circuit-breaker limits. A zero value means
// unlimited (Istio writes 2^32-1, and treats 0 as unset).
type ConnectionPool struct {
	// MaxConnections caps the connections to the cluster (tcp.maxConnections).
	MaxConnections uint32 `json:"max_connections,omitempty"`

	// MaxPendingRequests caps the requests waiting for a connection
	// (http.http1MaxPendingRequests). A request over the cap gets 503 at
	// once, with the header x-envoy-overloaded: true, and is not retried.
	MaxPendingRequests uint32 `json:"max_pending_requests,omitempty"`

	// MaxRequests caps the active requests to the cluster
	// (http.http2MaxRequests); over it, 503 as for MaxPendingRequests.
	MaxRequests uint32 `json:"max_requests,omitempty"`

	// MaxRetries caps the retries in progress to the cluster at one time
	// (http.maxRetries); a retry over the cap is not made.
	MaxRetries uint32 `json:"max_retries,omitempty"`

	// MaxRequestsPerConnection closes a connection after it has carried
	// this many requests (http.maxRequestsPerConnection). 1 disables
	// keep-alive.
	MaxRequestsPerConnection uint32 `json:"max_requests_per_connection,omitempty"`

	// MaxConnectionDuration closes a connection once it is this old, after
	// its request in flight completes (tcp.maxConnectionDuration).
	MaxConnectionDuration caddy.Duration `json:"max_connection_duration,omitempty"`

	// TCPKeepalive sets the keepalive probes of upstream connections
	// (tcp.tcpKeepalive); unset parts keep the OS defaults. Nil: Caddy's
	// transport keep_alive settings alone.
	TCPKeepalive *TCPKeepalive `json:"tcp_keepalive,omitempty"`

	// HTTP2KeepAlive sends HTTP/2 PINGs on an upstream connection idle for
	// Interval and closes it when no answer comes within Timeout
	// (http.http2KeepAlive). Nil: no PINGs.
	HTTP2KeepAlive *HTTP2KeepAlive `json:"http2_keep_alive,omitempty"`

	// MaxConcurrentStreams caps the requests in progress on one HTTP/2
	// upstream connection (http.maxConcurrentStreams); the server's own
	// SETTINGS limit applies too. 0: only the server's.
	MaxConcurrentStreams uint32 `json:"max_concurrent_streams,omitempty"`

	// UseClientProtocol speaks to the upstream the HTTP version the client
	// used (HTTP/2 to HTTP/2 clients, HTTP/1.1 otherwise)
	// (http.useClientProtocol).
	UseClientProtocol bool `json:"use_client_protocol,omitempty"`
}

// TCPKeepalive is Istio's tcpKeepalive: zero fields are the OS defaults.
type TCPKeepalive struct {
	Time     caddy.Duration `json:"time,omitempty"`     // idle time before the first probe
	Interval caddy.Duration `json:"interval,omitempty"` // between probes
	Probes   uint32         `json:"probes,omitempty"`   // unanswered probes before the connection is dropped
}

// HTTP2KeepAlive is Istio's http2KeepAlive.
type HTTP2KeepAlive struct {
	Interval caddy.Duration `json:"interval"`
	Timeout  caddy.Duration `json:"timeout"`
}

// OutlierDetection is Envoy's outlier detection for one cluster, with the
// defaults Istio writes filled in by the adapter. Counters are per endpoint
// and reset by a success.
type OutlierDetection struct {
	// Consecutive5xxErrors ejects an endpoint after this many consecutive
	// 5xx responses (local-origin failures count as 5xx unless
	// SplitExternalLocalOriginErrors). 0: off.
	Consecutive5xxErrors uint32 `json:"consecutive_5xx_errors,omitempty"`

	// ConsecutiveGatewayErrors ejects after this many consecutive 502, 503
	// or 504 responses (and local-origin failures unless split). 0: off.
	ConsecutiveGatewayErrors uint32 `json:"consecutive_gateway_errors,omitempty"`

	// SplitExternalLocalOriginErrors counts local-origin failures (connect
	// failure, reset, timeout) apart from upstream responses.
	SplitExternalLocalOriginErrors bool `json:"split_external_local_origin_errors,omitempty"`

	// ConsecutiveLocalOriginFailures ejects after this many consecutive
	// local-origin failures when split. 0: off.
	ConsecutiveLocalOriginFailures uint32 `json:"consecutive_local_origin_failures,omitempty"`

	// ErrorStatusCodes, when set, are the statuses that count as errors for
	// Consecutive5xxErrors instead of 500-599
	// (outlierDetectionHttpErrorCodes).
	ErrorStatusCodes []int `json:"error_status_codes,omitempty"`

	// Interval between ejection sweeps, which return endpoints whose
	// ejection time is over. Default: 10s.
	Interval caddy.Duration `json:"interval,omitempty"`

	// BaseEjectionTime times the number of times an endpoint was ejected
	// is how long it stays out. Default: 30s.
	BaseEjectionTime caddy.Duration `json:"base_ejection_time,omitempty"`

	// MaxEjectionPercent is the most endpoints, in percent, ejected at one
	// time; at least one can always be ejected. Default: 10.
	MaxEjectionPercent uint32 `json:"max_ejection_percent,omitempty"`

	// MinHealthPercent: when fewer endpoints than this percentage are
	// healthy, all are used (Envoy's panic mode). 0 (Istio's default)
	// disables panic mode: with every endpoint ejected, requests get 503.
	MinHealthPercent uint32 `json:"min_health_percent,omitempty"`
}

// UpstreamTLS is the istio-specific part of a cluster's upstream TLS.
type UpstreamTLS struct {
	// IstioMutual presents this proxy's mesh certificate (see Mesh) and
	// trusts only the mesh CA (ISTIO_MUTUAL).
	IstioMutual bool `json:"istio_mutual,omitempty"`

	// SubjectAltNames are the names (DNS names or URIs such as
	// spiffe://cluster.local/ns/default/sa/reviews) of which the server
	// certificate must carry one. Empty: with IstioMutual any identity of
	// the mesh trust domain; otherwise the transport's own hostname check.
	SubjectAltNames []string `json:"subject_alt_names,omitempty"`

	// CRLFile is a PEM file of certificate revocation lists (caCrl): a
	// server certificate whose serial one of them lists is refused.
	CRLFile string `json:"crl_file,omitempty"`
}

// LocalityLB is Envoy's locality-weighted load balancing and locality
// failover, relative to the locality of this proxy (Mesh.Locality).
// Localities are region/zone/subzone.
type LocalityLB struct {
	// Distribute gives, for clients in From (may end in *), the share in
	// percent of each To locality (may end in *).
	Distribute []*LocalityDistribute `json:"distribute,omitempty"`

	// Failover names, for a region, the region to fail over to.
	Failover []*LocalityFailover `json:"failover,omitempty"`

	// FailoverPriority is an ordered list of endpoint labels whose values,
	// equal to this proxy's, rank endpoints first.
	FailoverPriority []string `json:"failover_priority,omitempty"`
}

// LocalityDistribute is one localityLbSetting.distribute entry.
type LocalityDistribute struct {
	From string            `json:"from"`
	To   map[string]uint32 `json:"to"`
}

// LocalityFailover is one localityLbSetting.failover entry.
type LocalityFailover struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Warmup is Envoy's slow start: a new endpoint's weight is scaled by
// max(MinimumPercent/100, (age/Duration)^(1/Aggression)) until it is
// Duration old.
type Warmup struct {
	Duration       caddy.Duration `json:"duration"`
	MinimumPercent *float64       `json:"minimum_percent,omitempty"` // default 10; 0 is 0
	Aggression     float64        `json:"aggression,omitempty"`      // default 1
}

// Mesh is this proxy's place in the mesh: its identity, for ISTIO_MUTUAL,
// and its locality, for locality load balancing.
type Mesh struct {
	// TrustDomain of the mesh. Default: cluster.local.
	TrustDomain string `json:"trust_domain,omitempty"`

	// CA is the ID of the pki app certificate authority that issues the
	// mesh certificates; Caddy instances share the mesh by sharing this CA
	// (the same root and intermediate, from files or shared storage).
	// Default: istio.
	CA string `json:"ca,omitempty"`

	// Identity is this proxy's SPIFFE ID, spiffe://TRUST_DOMAIN/ns/NS/sa/SA.
	// Default: spiffe://TRUST_DOMAIN/ns/default/sa/default.
	Identity string `json:"identity,omitempty"`

	// Locality of this proxy, region/zone/subzone. Default: none.
	Locality string `json:"locality,omitempty"`

	// Labels of this proxy's workload (for failoverPriority).
	Labels map[string]string `json:"labels,omitempty"`
}

// The app's own JSON (App in istioapp.go) has four fields: `services`
// ([]*Service), `workloads` ([]*Workload, standalone WorkloadEntries),
// `clusters` ([]*Cluster) and `mesh` (*Mesh).
