package istioapp

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// socketKeepalive reads the keepalive options of a TCP socket.
func socketKeepalive(t *testing.T, conn *net.TCPConn) (on, idle, interval, count int) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	get := func(fd uintptr, level, opt int) int {
		v, err := syscall.GetsockoptInt(int(fd), level, opt)
		errs = append(errs, err)
		return v
	}
	err = raw.Control(func(fd uintptr) {
		on = get(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle = get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		interval = get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
		count = get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
	})
	for _, e := range append(errs, err) {
		if e != nil {
			t.Fatal(e)
		}
	}
	return on, idle, interval, count
}

// httpTransportOf returns the HTTP transport of a cluster's proxy.
func httpTransportOf(t *testing.T, ch *ClusterHandler) *reverseproxy.HTTPTransport {
	t.Helper()
	rt := ch.proxy.Transport
	if ch.transport != nil {
		rt = ch.transport.next
	}
	switch tr := rt.(type) {
	case *reverseproxy.HTTPTransport:
		return tr
	case *tlsTransport:
		return tr.ht
	}
	t.Fatalf("transport %T", rt)
	return nil
}

// TestTCPKeepalive: the upstream socket gets tcpKeepalive's time,
// interval and probes; unset ones are the OS defaults.
func TestTCPKeepalive(t *testing.T) {
	srv := handlerBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	sys := osKeepalive()
	for _, tc := range []struct {
		name                  string
		ka                    *TCPKeepalive
		idle, interval, count int
	}{
		{"all set", &TCPKeepalive{Time: caddy.Duration(7 * time.Second), Interval: caddy.Duration(3 * time.Second), Probes: 4}, 7, 3, 4},
		{"interval only", &TCPKeepalive{Interval: caddy.Duration(5 * time.Second)}, int(sys.Idle / time.Second), 5, sys.Count},
		{"none set", &TCPKeepalive{}, int(sys.Idle / time.Second), int(sys.Interval / time.Second), sys.Count},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.idle <= 0 || tc.interval <= 0 || tc.count <= 0 {
				t.Skip("no OS keepalive defaults in /proc")
			}
			ch := oneClusterApp(t, &Cluster{
				Name:           "outbound|80||keepalive.example",
				Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["1.1"]}}`),
				ConnectionPool: &ConnectionPool{TCPKeepalive: tc.ka},
			}, serverEndpoint(t, srv.Listener.Addr().String()))
			rt := httpTransportOf(t, ch).Transport
			var mu sync.Mutex
			var dialed []net.Conn
			dial := rt.DialContext
			rt.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := dial(ctx, network, addr)
				mu.Lock()
				dialed = append(dialed, conn)
				mu.Unlock()
				return conn, err
			}
			if r := do(ch, "/"); r.code != 200 {
				t.Fatalf("%+v", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(dialed) != 1 {
				t.Fatalf("%d connections dialed", len(dialed))
			}
			tcp := tcpConnOf(dialed[0])
			if tcp == nil {
				t.Fatalf("no TCP connection under %T", dialed[0])
			}
			on, idle, interval, count := socketKeepalive(t, tcp)
			if on == 0 || idle != tc.idle || interval != tc.interval || count != tc.count {
				t.Errorf("keepalive on=%d idle=%ds interval=%ds count=%d, want on, %ds, %ds, %d", on, idle, interval, count, tc.idle, tc.interval, tc.count)
			}
		})
	}
}
