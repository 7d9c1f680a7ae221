package istioadmin

import (
	_ "embed"
	"io"
	"net/http"
	"strings"
)

// uiPage is the web page: plain HTML and JavaScript, no external assets,
// that reads /istio/routes, /istio/clusters, /istio/endpoints and
// /metrics every 1.5 s from its own origin.
//
//go:embed ui.html
var uiPage []byte

// handleUI serves the page on the admin endpoint. Caddy's admin refuses
// browser navigations that carry fetch metadata (Sec-Fetch-Mode) without
// an Origin or Referer of an allowed origin, which is what a browser sends
// when the address is typed in for a loopback admin listener; `caddy istio
// ui` serves the same page from a local address for that case.
func handleUI(w http.ResponseWriter, r *http.Request) error {
	writePage(w)
	return nil
}

// writePage writes the page with headers that keep it self-contained.
func writePage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(uiPage)
}

// uiProxyPaths are the admin paths the page reads.
var uiProxyPaths = []string{"/istio/routes", "/istio/clusters", "/istio/endpoints", "/istio/config", "/metrics"}

// adminGetter performs a GET on the admin API, as
// caddycmd.AdminAPIRequest does (with the Origin the admin expects).
type adminGetter func(path string) (*http.Response, error)

// newUIHandler serves the page at / and /istio/ui, and forwards the page's
// reads to the admin API through get.
func newUIHandler(get adminGetter) http.Handler {
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "/istio/ui" {
			http.NotFound(w, r)
			return
		}
		writePage(w)
	}
	mux.HandleFunc("GET /", page)
	for _, path := range uiProxyPaths {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			resp, err := get(path)
			if err != nil {
				msg := err.Error()
				http.Error(w, strings.TrimSpace(msg), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		})
	}
	return mux
}
