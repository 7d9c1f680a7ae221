// Command caddy is Caddy with the standard modules and every caddy-istio module,
// the same binary that `xcaddy build --with github.com/caddy-istio/caddy-istio` gives.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-istio/caddy-istio"
)

func main() {
	caddycmd.Main()
}
