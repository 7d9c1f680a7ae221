package istiolb

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/cespare/xxhash/v2"
)

// HashKey says what part of a request the consistent-hash policies hash
// (Istio's ConsistentHashLB hash key; Envoy's route hash policy). Exactly
// one field must be set. When the request lacks the key, the pick is
// random, as in Envoy.
type HashKey struct {
	// Header hashes the value of this request header (the first one when
	// there are several). "Host" and ":authority" hash the request host.
	Header string `json:"header,omitempty"`

	// Cookie hashes the value of this cookie, and may generate it.
	Cookie *HashCookie `json:"cookie,omitempty"`

	// SourceIP hashes the client IP: the host of the downstream connection
	// address (r.RemoteAddr), as Envoy does.
	SourceIP bool `json:"source_ip,omitempty"`

	// QueryParameter hashes the raw (not decoded) value of the first query
	// parameter with this name.
	QueryParameter string `json:"query_parameter,omitempty"`

	// canonical header name, so a request pays no canonicalization.
	headerKey  string
	headerHost bool
}

// HashCookie is the cookie a consistent-hash policy hashes (Istio's
// httpCookie).
type HashCookie struct {
	// Name of the cookie. Required.
	Name string `json:"name"`

	// Path of a generated cookie. Default: none.
	Path string `json:"path,omitempty"`

	// TTL, when set, makes the policy generate the cookie when the request
	// lacks it, with Max-Age set to TTL in whole seconds; a TTL of 0 gives a
	// session cookie (no Max-Age). When unset, a request without the
	// cookie is balanced at random and no cookie is generated.
	TTL *caddy.Duration `json:"ttl,omitempty"`

	// Attributes are added to a generated cookie, in order, as
	// "; <name>=<value>", or "; <name>" when the value is empty (Istio's
	// httpCookie.attributes, e.g. SameSite=Strict).
	Attributes []CookieAttribute `json:"attributes,omitempty"`
}

// CookieAttribute is an attribute of a generated cookie.
type CookieAttribute struct {
	// Name of the attribute. Required.
	Name string `json:"name"`

	// Value of the attribute. Default: none.
	Value string `json:"value,omitempty"`
}

// provision prepares the key for the request path.
func (k *HashKey) provision() {
	if k.Header != "" {
		k.headerKey = textproto.CanonicalMIMEHeaderKey(k.Header)
		k.headerHost = k.headerKey == "Host" || k.Header == ":authority"
	}
}

// validate checks that exactly one key is set.
func (k *HashKey) validate() error {
	n := 0
	if k.Header != "" {
		n++
	}
	if k.Cookie != nil {
		n++
		if k.Cookie.Name == "" {
			return fmt.Errorf("cookie: name is required")
		}
		if k.Cookie.TTL != nil && *k.Cookie.TTL < 0 {
			return fmt.Errorf("cookie: ttl must not be negative")
		}
		for _, a := range k.Cookie.Attributes {
			if a.Name == "" {
				return fmt.Errorf("cookie: attribute name is required")
			}
		}
	}
	if k.SourceIP {
		n++
	}
	if k.QueryParameter != "" {
		n++
	}
	if n != 1 {
		return fmt.Errorf("exactly one hash key (header, cookie, source_ip, query_parameter) must be set, got %d", n)
	}
	return nil
}

// requestHash returns the hash of the request's key. When the request lacks
// it, it returns a random hash (Envoy's fallback), after generating the
// cookie when the cookie has a TTL: then the hash is that of the new cookie
// value, so the next request carrying it reaches the same host.
func (k *HashKey) requestHash(r *http.Request, w http.ResponseWriter) uint64 {
	switch {
	case k.headerHost:
		if r.Host != "" {
			return xxhash.Sum64String(r.Host)
		}
	case k.headerKey != "":
		if v := r.Header[k.headerKey]; len(v) == 1 {
			return xxhash.Sum64String(v[0])
		} else if len(v) > 1 {
			return hashValues(v)
		}
	case k.SourceIP:
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return xxhash.Sum64String(host)
		} else if r.RemoteAddr != "" {
			return xxhash.Sum64String(r.RemoteAddr)
		}
	case k.QueryParameter != "":
		if v, ok := rawQueryValue(r.URL.RawQuery, k.QueryParameter); ok {
			return xxhash.Sum64String(v)
		}
	case k.Cookie != nil:
		// Envoy takes an empty cookie for a missing one.
		if c, err := r.Cookie(k.Cookie.Name); err == nil && c.Value != "" {
			return xxhash.Sum64String(c.Value)
		}
		if k.Cookie.TTL != nil && w != nil {
			value := generatedCookieValue(r)
			setHashCookie(w, k.Cookie, value)
			return xxhash.Sum64String(value)
		}
	}
	return rand.Uint64()
}

// hashValues hashes the values of a repeated header as Envoy does: sorted,
// so their order does not matter, and concatenated.
func hashValues(values []string) uint64 {
	sorted := slices.Sorted(slices.Values(values))
	var d xxhash.Digest
	d.Reset()
	for _, v := range sorted {
		d.WriteString(v)
	}
	return d.Sum64()
}

// generatedCookieValue is Envoy's generated cookie value: the hex xxHash64
// of the downstream connection's remote and local addresses, so requests
// racing on one connection get the same cookie.
func generatedCookieValue(r *http.Request) string {
	local := ""
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = addr.String()
	}
	return fmt.Sprintf("%016x", xxhash.Sum64String(r.RemoteAddr+local))
}

// setHashCookie adds the Set-Cookie header of a generated cookie as Envoy
// writes it (quoted value, Max-Age, Path, attributes, HttpOnly), once: Caddy
// calls the selection policy again on a retry.
func setHashCookie(w http.ResponseWriter, c *HashCookie, value string) {
	var b strings.Builder
	b.WriteString(c.Name)
	b.WriteString(`="`)
	b.WriteString(value)
	b.WriteByte('"')
	if maxAge := int64(time.Duration(*c.TTL) / time.Second); maxAge > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(maxAge, 10))
	}
	if c.Path != "" {
		b.WriteString("; Path=")
		b.WriteString(c.Path)
	}
	for _, a := range c.Attributes {
		b.WriteString("; ")
		b.WriteString(a.Name)
		if a.Value != "" {
			b.WriteByte('=')
			b.WriteString(a.Value)
		}
	}
	b.WriteString("; HttpOnly")
	cookie := b.String()
	for _, existing := range w.Header().Values("Set-Cookie") {
		if existing == cookie {
			return
		}
	}
	w.Header().Add("Set-Cookie", cookie)
}

// rawQueryValue returns the raw value of the first parameter name in query,
// without allocating.
func rawQueryValue(query, name string) (string, bool) {
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key == name {
			return value, true
		}
	}
	return "", false
}

// unmarshalHashKey parses one hash-key directive of a consistent-hash policy
// block; it reports false when the directive is not a hash key.
//
//	header <name>
//	cookie <name> [{
//	    path      <path>
//	    ttl       <duration>
//	    attribute <name> [<value>]
//	}]
//	source_ip
//	query_parameter <name>
func (k *HashKey) unmarshalHashKey(d *caddyfile.Dispenser) (bool, error) {
	switch d.Val() {
	case "header":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		k.Header = d.Val()
	case "source_ip":
		k.SourceIP = true
	case "query_parameter":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		k.QueryParameter = d.Val()
	case "cookie":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		k.Cookie = &HashCookie{Name: d.Val()}
		if d.NextArg() {
			return true, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "path":
				if !d.NextArg() {
					return true, d.ArgErr()
				}
				k.Cookie.Path = d.Val()
			case "ttl":
				if !d.NextArg() {
					return true, d.ArgErr()
				}
				ttl, err := caddy.ParseDuration(d.Val())
				if err != nil {
					return true, d.Errf("invalid cookie ttl %q: %v", d.Val(), err)
				}
				k.Cookie.TTL = (*caddy.Duration)(&ttl)
			case "attribute":
				if !d.NextArg() {
					return true, d.ArgErr()
				}
				a := CookieAttribute{Name: d.Val()}
				if d.NextArg() {
					a.Value = d.Val()
				}
				k.Cookie.Attributes = append(k.Cookie.Attributes, a)
			default:
				return true, d.Errf("unrecognized cookie option %q", d.Val())
			}
			if d.NextArg() {
				return true, d.ArgErr()
			}
		}
		return true, nil
	default:
		return false, nil
	}
	if d.NextArg() {
		return true, d.ArgErr()
	}
	return true, nil
}

// endpointWeight returns the weight of an endpoint; 1 without EndpointInfo.
func endpointWeight(info EndpointInfo, dial string) uint32 {
	if info == nil {
		return 1
	}
	if w := info.EndpointWeight(dial); w > 0 {
		return w
	}
	return 1
}

// samePool reports whether pool has exactly these dial addresses and
// weights, in order: then a table built for them still holds. It does not
// allocate.
func samePool(pool reverseproxy.UpstreamPool, info EndpointInfo, dials []string, weights []uint32) bool {
	if len(pool) != len(dials) {
		return false
	}
	for i, u := range pool {
		if u.Dial != dials[i] || endpointWeight(info, u.Dial) != weights[i] {
			return false
		}
	}
	return true
}

// poolSnapshot copies the dial addresses and weights of pool.
func poolSnapshot(pool reverseproxy.UpstreamPool, info EndpointInfo) ([]string, []uint32) {
	dials := make([]string, len(pool))
	weights := make([]uint32, len(pool))
	for i, u := range pool {
		dials[i] = u.Dial
		weights[i] = endpointWeight(info, u.Dial)
	}
	return dials, weights
}

// unmarshalHashPolicy parses the Caddyfile block of a consistent-hash
// policy (ring_hash, maglev): one hash key (see unmarshalHashKey) and the
// policy's table size option, sizeOption, into size.
func unmarshalHashPolicy(d *caddyfile.Dispenser, policy string, key *HashKey, sizeOption string, size *uint64) error {
	d.Next() // consume policy name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if ok, err := key.unmarshalHashKey(d); ok {
			if err != nil {
				return err
			}
			continue
		}
		if d.Val() != sizeOption {
			return d.Errf("unrecognized %s option %q", policy, d.Val())
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		n, err := strconv.ParseUint(d.Val(), 10, 64)
		if err != nil {
			return d.Errf("invalid %s %q: %v", sizeOption, d.Val(), err)
		}
		*size = n
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}
