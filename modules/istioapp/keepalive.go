package istioapp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// configureKeepalive applies the cluster's TCP keepalive and HTTP/2
// keepalive (PING) settings to the provisioned transport ht. It must run
// before wrapDial, so that the keepalive dialer sees the TCP connection
// itself.
func configureKeepalive(ht *reverseproxy.HTTPTransport, cp *ConnectionPool) error {
	if cp == nil || (cp.TCPKeepalive == nil && cp.HTTP2KeepAlive == nil) {
		return nil
	}
	rt := ht.Transport
	if rt == nil {
		return fmt.Errorf("keepalive: the transport is not provisioned")
	}
	if ka := cp.HTTP2KeepAlive; ka != nil {
		if ka.Interval <= 0 {
			return fmt.Errorf("http2_keep_alive: interval must be positive")
		}
		// Caddy configures HTTP/2 with golang.org/x/net/http2, which reads
		// the HTTP2 settings of the HTTP/1 transport for each new
		// connection (h2 by ALPN and h2c alike)
		if rt.HTTP2 == nil {
			rt.HTTP2 = new(http.HTTP2Config)
		}
		rt.HTTP2.SendPingTimeout = time.Duration(ka.Interval)
		rt.HTTP2.PingTimeout = time.Duration(ka.Timeout)
	}
	if cp.TCPKeepalive == nil {
		return nil
	}
	if rt.DialContext == nil {
		return fmt.Errorf("tcp_keepalive: transport has no dialer to wrap")
	}
	cfg := keepaliveConfigOf(cp.TCPKeepalive)
	dial := rt.DialContext
	rt.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tcp := tcpConnOf(conn); tcp != nil {
			if err := tcp.SetKeepAliveConfig(cfg); err != nil {
				_ = conn.Close()
				return nil, reverseproxy.NewDialError(fmt.Errorf("setting tcp keepalive: %v", err))
			}
		}
		return conn, nil
	}
	if rt.DialTLSContext != nil {
		// Caddy's TLS dialer dials without the transport's DialContext:
		// replace it by one that does the same handshake over it
		rt.DialTLSContext = tlsDialer(rt)
	}
	return nil
}

// keepaliveConfigOf is the socket keepalive of ka: its zero fields are the
// OS defaults, as Envoy leaves them, written out because Go's dialer (and
// Caddy's) sets its own for the fields it is not given.
func keepaliveConfigOf(ka *TCPKeepalive) net.KeepAliveConfig {
	cfg := osKeepalive()
	cfg.Enable = true
	if ka.Time > 0 {
		cfg.Idle = time.Duration(ka.Time)
	}
	if ka.Interval > 0 {
		cfg.Interval = time.Duration(ka.Interval)
	}
	if ka.Probes > 0 {
		cfg.Count = int(min(ka.Probes, 1<<15))
	}
	return cfg
}

// osKeepalive reads the system's keepalive defaults (Linux sysctls); a
// value it cannot read is -1, which leaves the socket's setting as it is.
var osKeepalive = sync.OnceValue(func() net.KeepAliveConfig {
	read := func(name string) int {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return -1
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n <= 0 {
			return -1
		}
		return n
	}
	seconds := func(n int) time.Duration {
		if n < 0 {
			return -1
		}
		return time.Duration(n) * time.Second
	}
	return net.KeepAliveConfig{
		Idle:     seconds(read("tcp_keepalive_time")),
		Interval: seconds(read("tcp_keepalive_intvl")),
		Count:    read("tcp_keepalive_probes"),
	}
})

// tcpConnOf returns the TCP connection under conn, nil if there is none.
func tcpConnOf(conn net.Conn) *net.TCPConn {
	for conn != nil {
		switch c := conn.(type) {
		case *net.TCPConn:
			return c
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}
