package istioroute

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
}

// The handler's own JSON: see Handler in istioroute.go, whose config fields
// are `virtual_hosts` ([]*VirtualHost) and `path_normalization` (Istio's
// MeshConfig pathNormalization: NONE, BASE, MERGE_SLASHES or
// DECODE_AND_MERGE_SLASHES; default BASE).
