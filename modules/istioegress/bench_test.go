package istioegress

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// sinkServer discards what it receives and closes after the client's
// half-close.
func sinkServer(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				// one large buffer: io.Copy to io.Discard reads 8 KiB at
				// a time, which makes the sink the bottleneck
				buf := make([]byte, 256<<10)
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

const benchTransfer = 16 << 20

// sendAll writes benchTransfer bytes to conn, half-closes it and waits for
// the other side to close.
func sendAll(b *testing.B, conn net.Conn, rest io.Reader) {
	buf := make([]byte, 64<<10)
	for sent := 0; sent < benchTransfer; sent += len(buf) {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, rest)
	conn.Close()
}

// BenchmarkConnectTunnel compares an upload through an HTTP/1.1 CONNECT
// tunnel with the same upload over a direct connection. The tunnel
// splices (see tunnel.copy), so its CPU profile should show splice, not
// read and write:
//
//	go test -run '^$' -bench ConnectTunnel -cpuprofile cpu.prof ./modules/istioegress/
func BenchmarkConnectTunnel(b *testing.B) {
	target := sinkServer(b)
	_, port, _ := net.SplitHostPort(target)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(benchTransfer)
		for b.Loop() {
			conn, err := net.Dial("tcp", target)
			if err != nil {
				b.Fatal(err)
			}
			sendAll(b, conn, conn)
		}
	})
	b.Run("tunnel", func(b *testing.B) {
		h := newTestHandler(b, "", `{"allow": ["127.0.0.1:`+port+`"]}`)
		h.logger = zap.NewNop() // the access log line of each tunnel is not what is measured
		proxy := newProxyServer(b, h, false).Listener.Addr().String()
		b.SetBytes(benchTransfer)
		for b.Loop() {
			conn, err := net.Dial("tcp", proxy)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
				b.Fatal(err)
			}
			// the 200 line and the blank line
			head := make([]byte, len("HTTP/1.1 200 Connection established\r\n\r\n"))
			if _, err := io.ReadFull(conn, head); err != nil || string(head[9:12]) != "200" {
				b.Fatalf("CONNECT: %q %v", head, err)
			}
			sendAll(b, conn, conn)
		}
	})
}

// TestSpliceIdleAndCounts: a spliced tunnel whose only traffic is a
// trickle one way (so no copy returns on its own) stays open past the
// idle timeout, is closed once quiet, and logs the bytes it moved.
func TestSpliceIdleAndCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	received := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		received <- n
	}()
	target := ln.Addr().String()
	_, port, _ := net.SplitHostPort(target)
	h := newTestHandler(t, "", `{"allow": ["127.0.0.1:`+port+`"], "idle_timeout": "500ms"}`)
	core, logs := observer.New(zap.InfoLevel)
	h.logger = zap.New(core)
	proxy := newProxyServer(t, h, false).Listener.Addr().String()

	conn, br, resp := connectH1(t, proxy, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	// 700ms of one byte every 50ms: active for longer than the idle
	// timeout, with gaps far below it even on a busy machine
	const trickle = 14
	for range trickle {
		if _, err := conn.Write([]byte("x")); err != nil {
			t.Fatalf("tunnel closed while active: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// quiet: the proxy closes the tunnel
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("tunnel still open after the idle timeout")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("tunnel closed after %v, want about 500ms", waited)
	}
	if n := <-received; n != trickle {
		t.Fatalf("destination got %d bytes, want %d", n, trickle)
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("egress").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	entries := logs.FilterMessage("egress").All()
	if len(entries) != 1 {
		t.Fatalf("%d access log entries, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if fields["bytes_up"] != int64(trickle) || fields["idle_timeout"] != true {
		t.Errorf("access log %v, want bytes_up %d and idle_timeout", fields, trickle)
	}
}
