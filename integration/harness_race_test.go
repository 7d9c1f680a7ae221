package integration

import "testing"

func TestRaceReportsKnownUpstream(t *testing.T) {
	const sep = "==================\n"
	upstreamRace := sep + "WARNING: DATA RACE\nWrite at 0x00c0002bc1a8 by goroutine 57:\n" +
		"  github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*bodyNopCloserIfNotRead).Read()\n" +
		"Previous read at 0x00c0002bc1a8 by goroutine 58:\n" +
		"  github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*bodyNopCloserIfNotRead).Close()\n" + sep
	ourRace := sep + "WARNING: DATA RACE\nWrite at 0x1 by goroutine 5:\n" +
		"  github.com/caddy-istio/caddy-istio/modules/istioapp.(*pool).pick()\n" +
		"Previous read at 0x1 by goroutine 6:\n" +
		"  github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*bodyNopCloserIfNotRead).Close()\n" + sep
	for _, tc := range []struct {
		name            string
		out             string
		races, upstream int
	}{
		{"none", "{\"level\":\"info\"}\n", 0, 0},
		{"upstream only", "log\n" + upstreamRace + "log\n" + upstreamRace, 2, 2},
		{"ours beside upstream", upstreamRace + ourRace, 2, 1},
	} {
		races, upstream := raceReports(tc.out)
		if races != tc.races || upstream != tc.upstream {
			t.Errorf("%s: %d races, %d upstream; want %d, %d", tc.name, races, upstream, tc.races, tc.upstream)
		}
	}
}
