package istioroute

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/modules/istiofault"
)

// This file holds the JSON configuration types of the istio_route handler:
// the contract between the adapter (which compiles VirtualServices into them)
// and the runtime. Field names follow Istio's, in Caddy's snake_case.

// VirtualHost is the set of routes served for some request hosts: one Istio
// virtual host (all hosts of a VirtualService, or a service without one).
type VirtualHost struct {
	// Name for logs and introspection, e.g. "reviews.default.svc.cluster.local:9080".
	Name string `json:"name"`

	// Domains this virtual host answers, matched against the request's
	// Host (or the authority of an absolute-form request), case-insensitively:
	// an exact name ("reviews", "reviews.default.svc.cluster.local"), a
	// name with a port ("reviews:9080"), a wildcard for any number of left
	// labels ("*.example.com", which does not match example.com), or "*"
	// for every host. Precedence as Envoy: exact (with port, then without),
	// then the longest wildcard suffix, then "*".
	Domains []string `json:"domains"`

	// Routes in order; the first that matches wins. A request that matches
	// none gets 404, as Envoy's "no route" (NR).
	Routes []*Route `json:"routes,omitempty"`
}

// Route is one Istio HTTPRoute.
type Route struct {
	// Name is the HTTPRoute name (for logs).
	Name string `json:"name,omitempty"`

	// VirtualService that defined the route, as namespace/name (for logs).
	VirtualService string `json:"virtual_service,omitempty"`

	// Match is a list of alternatives (OR); all conditions inside one
	// alternative must hold (AND). Empty matches every request.
	Match []*Match `json:"match,omitempty"`

	// Route is the list of weighted destinations. Each request picks one at
	// random in proportion to its weight; a single destination gets all
	// requests whatever its weight; destinations of weight 0 get none when
	// there are others.
	Route []*Destination `json:"route,omitempty"`

	// Redirect answers with an HTTP redirect instead of proxying.
	Redirect *Redirect `json:"redirect,omitempty"`

	// DirectResponse answers with a fixed status and body instead of proxying.
	DirectResponse *DirectResponse `json:"direct_response,omitempty"`

	// Rewrite changes the path and/or authority before proxying.
	Rewrite *Rewrite `json:"rewrite,omitempty"`

	// Timeout bounds the whole upstream exchange, retries included (not a
	// fault delay). Default: 0, no timeout (Istio's default).
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Retries is the retry policy. Nil means no retries; the adapter writes
	// Istio's default policy explicitly when a VirtualService has none.
	Retries *RetryPolicy `json:"retries,omitempty"`

	// Fault is applied before the request is proxied (and before Timeout
	// starts). An injected abort is never retried.
	Fault *istiofault.Fault `json:"fault,omitempty"`

	// Mirrors receive a fire-and-forget copy of the requests the route
	// proxies; their responses and failures never affect the client.
	Mirrors []*Mirror `json:"mirrors,omitempty"`

	// CORS is the route's CORS policy.
	CORS *CORSPolicy `json:"cors,omitempty"`

	// Headers are the route-level header operations. They apply to proxied
	// requests and responses, and to redirects and direct responses
	// (response operations only).
	Headers *Headers `json:"headers,omitempty"`
}

// Rewrite is Istio's HTTPRewrite.
type Rewrite struct {
	// URI replaces the matched prefix when the matching alternative used a
	// uri prefix match, and the whole path otherwise (Envoy prefix_rewrite).
	// The query string is kept.
	URI string `json:"uri,omitempty"`
	// URIRegex rewrites the path with an RE2 substitution (Envoy
	// regex_rewrite): every match of Match is replaced by Rewrite, where \1
	// names a capture group.
	URIRegex *RegexRewrite `json:"uri_regex,omitempty"`
	// Authority replaces the Host header sent upstream.
	Authority string `json:"authority,omitempty"`
}

// RegexRewrite is Istio's RegexRewrite.
type RegexRewrite struct {
	Match   string `json:"match"`
	Rewrite string `json:"rewrite"`
}

// RetryPolicy is Istio's HTTPRetry as Envoy runs it.
type RetryPolicy struct {
	// Attempts is the number of retries after the first try (Envoy
	// num_retries). 0 disables retries.
	Attempts int `json:"attempts"`
	// PerTryTimeout bounds each try, the first included. Default: 0, none.
	PerTryTimeout caddy.Duration `json:"per_try_timeout,omitempty"`
	// RetryOn lists Envoy retry conditions: 5xx, gateway-error, reset,
	// reset-before-request, connect-failure, envoy-ratelimited,
	// retriable-4xx, refused-stream, retriable-status-codes,
	// retriable-headers, http3-post-connect-failure, and the gRPC ones
	// cancelled, deadline-exceeded, internal, resource-exhausted,
	// unavailable.
	RetryOn []string `json:"retry_on,omitempty"`
	// RetriableStatusCodes are retried when RetryOn has
	// retriable-status-codes.
	RetriableStatusCodes []int `json:"retriable_status_codes,omitempty"`
	// RetryRemoteLocalities lets retries go to other localities.
	RetryRemoteLocalities bool `json:"retry_remote_localities,omitempty"`
	// AllowPreviousHosts turns off Istio's default preference for a host
	// not tried before (retryIgnorePreviousHosts: false).
	AllowPreviousHosts bool `json:"allow_previous_hosts,omitempty"`
	// Backoff is the base interval of the exponential, jittered back-off
	// between tries (the maximum is 10 times it). Default: 25ms.
	Backoff caddy.Duration `json:"backoff,omitempty"`
}

// Mirror is one mirror target (Istio mirror/mirrors).
type Mirror struct {
	// Cluster receives the copy, e.g. outbound|8000|v2|httpbin.default.svc.cluster.local.
	Cluster string `json:"cluster"`
	// Percentage of requests mirrored, 0 to 100. The adapter writes 100
	// when Istio's percentage is absent.
	Percentage float64 `json:"percentage"`
}

// CORSPolicy is Istio's CorsPolicy as Envoy's CORS filter runs it.
type CORSPolicy struct {
	// AllowOrigins are matched against the Origin header.
	AllowOrigins  []*StringMatch `json:"allow_origins,omitempty"`
	AllowMethods  []string       `json:"allow_methods,omitempty"`
	AllowHeaders  []string       `json:"allow_headers,omitempty"`
	ExposeHeaders []string       `json:"expose_headers,omitempty"`
	// MaxAge in whole seconds; 0 sends no Access-Control-Max-Age.
	MaxAge int64 `json:"max_age,omitempty"`
	// AllowCredentials: true sends Access-Control-Allow-Credentials: true;
	// false or nil send nothing, as Envoy's CORS filter.
	AllowCredentials *bool `json:"allow_credentials,omitempty"`
	// UnmatchedPreflights is FORWARD (default: a preflight whose origin is
	// not allowed goes upstream) or IGNORE (it is answered 200 without
	// CORS headers).
	UnmatchedPreflights string `json:"unmatched_preflights,omitempty"`
}

// Headers are Istio's request and response header operations.
type Headers struct {
	Request  *HeaderOperations `json:"request,omitempty"`
	Response *HeaderOperations `json:"response,omitempty"`
}

// HeaderOperations: Set overwrites, Add appends a value, Remove deletes.
type HeaderOperations struct {
	Set    map[string]string `json:"set,omitempty"`
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Redirect is Istio's HTTPRedirect (Envoy RedirectAction).
type Redirect struct {
	// URI replaces the whole path; the query string is kept unless URI has one.
	URI string `json:"uri,omitempty"`
	// PrefixRewrite replaces only the matched URI prefix.
	PrefixRewrite string `json:"prefix_rewrite,omitempty"`
	// Authority replaces the host.
	Authority string `json:"authority,omitempty"`
	// Port sets the port of the Location; 0 keeps what DerivePort says.
	Port uint32 `json:"port,omitempty"`
	// DerivePort is FROM_PROTOCOL_DEFAULT (no port; the default) or
	// FROM_REQUEST_PORT (the port the request came in on).
	DerivePort string `json:"derive_port,omitempty"`
	// Scheme replaces the scheme ("http" or "https").
	Scheme string `json:"scheme,omitempty"`
	// RedirectCode is the status. Default: 301.
	RedirectCode int `json:"redirect_code,omitempty"`
}

// DirectResponse is Istio's HTTPDirectResponse.
type DirectResponse struct {
	// Status is the HTTP status to answer with.
	Status int `json:"status"`
	// Body is the response body (already decoded from Istio's string or
	// base64 bytes).
	Body []byte `json:"body,omitempty"`
}

// Match is one HTTPMatchRequest. Unset fields match anything.
type Match struct {
	Name string `json:"name,omitempty"`

	// StatPrefix, when set, makes the requests this alternative matches
	// count in Envoy's route statistics under this prefix
	// (envoy_vhost_route_upstream_rq{envoy_virtual_host, envoy_route,
	// envoy_response_code}, ..._total, ..._completed, ..._retry,
	// ..._timeout, ..._time), as HTTPMatchRequest.statPrefix.
	StatPrefix string `json:"stat_prefix,omitempty"`

	// URI matches the request path without the query string.
	URI *StringMatch `json:"uri,omitempty"`
	// Scheme matches "http" or "https".
	Scheme *StringMatch `json:"scheme,omitempty"`
	// Method matches the request method.
	Method *StringMatch `json:"method,omitempty"`
	// Authority matches the Host header, including ":port" when the client sent one.
	Authority *StringMatch `json:"authority,omitempty"`

	// Headers must all match. Keys are lower-case header names; a
	// StringMatch with no field set means "present". Several values of one
	// header are joined with "," before matching.
	Headers map[string]*StringMatch `json:"headers,omitempty"`

	// WithoutHeaders must all fail to match. For value matchers a missing
	// header counts as the empty string before the negation.
	WithoutHeaders map[string]*StringMatch `json:"without_headers,omitempty"`

	// QueryParams must all match the first value of each parameter. A
	// StringMatch with no field set means "present".
	QueryParams map[string]*StringMatch `json:"query_params,omitempty"`

	// IgnoreURICase makes exact and prefix URI matches case-insensitive.
	IgnoreURICase bool `json:"ignore_uri_case,omitempty"`
}

// StringMatch is Istio's StringMatch: at most one of Exact, Prefix and Regex.
// None set means "present" (for headers and query parameters) or "anything".
type StringMatch struct {
	Exact  *string `json:"exact,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	// Regex is RE2 and must match the whole value.
	Regex *string `json:"regex,omitempty"`
}

// Destination is one weighted destination of a route.
type Destination struct {
	// Cluster is the name of an istio app cluster, e.g.
	// outbound|9080|v1|reviews.default.svc.cluster.local. A cluster that
	// does not exist answers 503, as Envoy's "no cluster" (NC).
	Cluster string `json:"cluster"`

	// Weight relative to the other destinations of the route.
	Weight int32 `json:"weight,omitempty"`

	// Headers are this destination's header operations; on a conflicting
	// set they win over the route-level ones.
	Headers *Headers `json:"headers,omitempty"`
}

// Telemetry configures the handler's metrics and the source side of their
// labels. Everything has a default; the proxy's own namespace, principal
// and workload labels come from the istio app's mesh (Mesh.Identity and
// Mesh.Labels).
type Telemetry struct {
	// Disabled turns off the istio_* metrics (response flags, access log
	// fields and x-request-id remain).
	Disabled bool `json:"disabled,omitempty"`

	// Reporter is the reporter label. Only "source" is supported: the
	// handler routes outbound requests, which Istio reports from the
	// source, for a sidecar as for a gateway. ("destination" would need
	// the labels of the downstream peer, which this proxy does not know.)
	// Default: source.
	Reporter string `json:"reporter,omitempty"`

	// SourceWorkload is this proxy's workload name (Istio's
	// source_workload, e.g. the Deployment name). Default: the mesh
	// label service.istio.io/canonical-name, app.kubernetes.io/name or
	// app, else "unknown".
	SourceWorkload string `json:"source_workload,omitempty"`

	// ClusterID names the cluster of this proxy and of the endpoints it
	// sends to (source_cluster, destination_cluster). Default: Kubernetes,
	// Istio's default cluster ID.
	ClusterID string `json:"cluster_id,omitempty"`
}

// The handler's own JSON: see Handler in istioroute.go, whose config fields
// are `virtual_hosts` ([]*VirtualHost) and `path_normalization` (Istio's
// MeshConfig pathNormalization: NONE, BASE, MERGE_SLASHES or
// DECODE_AND_MERGE_SLASHES; default BASE) and `telemetry` (*Telemetry).
