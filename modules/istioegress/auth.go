package istioegress

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

// loadAccounts decodes the password hashes of the accounts by user name.
// It also returns the hash of the first account, compared for unknown
// users.
func loadAccounts(accounts []Account) (map[string][]byte, []byte, error) {
	if len(accounts) == 0 {
		return nil, nil, nil
	}
	out := make(map[string][]byte, len(accounts))
	var first []byte
	for i, a := range accounts {
		if a.Username == "" || a.Password == "" {
			return nil, nil, fmt.Errorf("auth[%d]: username and password are required", i)
		}
		if _, dup := out[a.Username]; dup {
			return nil, nil, fmt.Errorf("auth[%d]: user %q defined more than once", i, a.Username)
		}
		hash := []byte(a.Password)
		if !strings.HasPrefix(a.Password, "$") {
			decoded, err := base64.StdEncoding.DecodeString(a.Password)
			if err != nil {
				return nil, nil, fmt.Errorf("auth[%d]: password must be a bcrypt hash ($2a$...) or base64 of one: %v", i, err)
			}
			hash = decoded
		}
		if !strings.HasPrefix(string(hash), "$2") {
			return nil, nil, fmt.Errorf("auth[%d]: password is not a bcrypt hash", i)
		}
		out[a.Username] = hash
		if first == nil {
			first = hash
		}
	}
	return out, first, nil
}

// authorize checks who may use the proxy. It returns 0 when the client
// may, else 407 (credentials missing or wrong) or 403 (TLS identity not
// allowed) with the reason.
func (h *Handler) authorize(r *http.Request) (status int, reason string) {
	if len(h.ClientIdentities) > 0 && !h.identityAllowed(r) {
		return http.StatusForbidden, "client identity not allowed"
	}
	if h.accounts == nil {
		return 0, ""
	}
	user, pass, ok := proxyBasicAuth(r)
	if !ok {
		return http.StatusProxyAuthRequired, "proxy credentials missing"
	}
	hash, known := h.accounts[user]
	if !known {
		// compare with a real hash anyway, of the same cost as the
		// accounts', so a wrong user name costs as much as a wrong password
		hash = h.fakeHash
	}
	same, err := caddyauth.BcryptHash{}.Compare(hash, []byte(pass))
	if err != nil || !same || !known {
		return http.StatusProxyAuthRequired, "proxy credentials wrong"
	}
	return 0, ""
}

// proxyBasicAuth reads Basic credentials from Proxy-Authorization.
func proxyBasicAuth(r *http.Request) (user, pass string, ok bool) {
	scheme, encoded, found := strings.Cut(r.Header.Get("Proxy-Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(decoded), ":")
}

// identityAllowed reports whether the client's verified TLS certificate
// carries an allowed URI SAN.
func (h *Handler) identityAllowed(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	for _, uri := range r.TLS.PeerCertificates[0].URIs {
		id := uri.String()
		for _, want := range h.ClientIdentities {
			if prefix, ok := strings.CutSuffix(want, "*"); ok {
				if strings.HasPrefix(id, prefix) {
					return true
				}
			} else if id == want {
				return true
			}
		}
	}
	return false
}

// deny407or403 answers a client that may not use the proxy.
func (h *Handler) deny407or403(w http.ResponseWriter, status int, reason string) {
	if status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="`+h.Realm+`"`)
	}
	http.Error(w, "istio_egress: "+reason, status)
}
