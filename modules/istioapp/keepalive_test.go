package istioapp

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// HTTP/2 frame types and flags the PING counting server uses.
const (
	frameHeaders  = 0x1
	frameSettings = 0x4
	framePing     = 0x6
	flagAck       = 0x1
	flagEndStream = 0x1
	flagEndHeader = 0x4
)

// pingServer is a minimal h2c server: it answers every request 200 with no
// body and counts the PINGs it receives, which it acknowledges unless
// silent. closed is closed when the client closes a connection.
type pingServer struct {
	addr   string
	pings  atomic.Int32
	closed chan struct{}
}

func newPingServer(t *testing.T, silent bool) *pingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &pingServer{addr: ln.Addr().String(), closed: make(chan struct{})}
	var once sync.Once
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			go func() {
				s.serve(conn, silent)
				once.Do(func() { close(s.closed) })
			}()
		}
	}()
	return s
}

// serve speaks HTTP/2 on conn until the client closes it.
func (s *pingServer) serve(conn net.Conn, silent bool) {
	br := bufio.NewReader(conn)
	var wmu sync.Mutex
	write := func(typ, flags byte, stream uint32, payload []byte) {
		hdr := make([]byte, 9, 9+len(payload))
		hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		hdr[3], hdr[4] = typ, flags
		binary.BigEndian.PutUint32(hdr[5:], stream)
		wmu.Lock()
		conn.Write(append(hdr, payload...))
		wmu.Unlock()
	}
	if _, err := io.ReadFull(br, make([]byte, 24)); err != nil { // client preface
		return
	}
	write(frameSettings, 0, 0, nil)
	for {
		hdr := make([]byte, 9)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		typ, flags, stream := hdr[3], hdr[4], binary.BigEndian.Uint32(hdr[5:])&(1<<31-1)
		switch {
		case typ == frameSettings && flags&flagAck == 0:
			write(frameSettings, flagAck, 0, nil)
		case typ == frameHeaders:
			// 0x88 is ":status: 200" from HPACK's static table
			write(frameHeaders, flagEndHeader|flagEndStream, stream, []byte{0x88})
		case typ == framePing && flags&flagAck == 0:
			s.pings.Add(1)
			if !silent {
				write(framePing, flagAck, 0, payload)
			}
		}
	}
}

// TestHTTP2KeepAlive: an idle HTTP/2 upstream connection gets a PING every
// interval; one whose peer does not answer is closed after the timeout.
func TestHTTP2KeepAlive(t *testing.T) {
	keepalive := &ConnectionPool{HTTP2KeepAlive: &HTTP2KeepAlive{
		Interval: caddy.Duration(100 * time.Millisecond),
		Timeout:  caddy.Duration(200 * time.Millisecond),
	}}
	cluster := func(cp *ConnectionPool) *Cluster {
		return &Cluster{
			Name:           "outbound|80||h2-keepalive.example",
			Proxy:          json.RawMessage(`{"transport":{"protocol":"http","versions":["h2c"]}}`),
			ConnectionPool: cp,
		}
	}

	t.Run("answered", func(t *testing.T) {
		srv := newPingServer(t, false)
		ch := oneClusterApp(t, cluster(keepalive), serverEndpoint(t, srv.addr))
		if r := do(ch, "/"); r.code != 200 {
			t.Fatalf("%+v", r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for srv.pings.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := srv.pings.Load(); n < 3 {
			t.Fatalf("%d PINGs on the idle connection, want at least 3", n)
		}
		select {
		case <-srv.closed:
			t.Error("the connection was closed although its PINGs were answered")
		default:
		}
	})

	t.Run("silent peer", func(t *testing.T) {
		srv := newPingServer(t, true)
		ch := oneClusterApp(t, cluster(keepalive), serverEndpoint(t, srv.addr))
		if r := do(ch, "/"); r.code != 200 {
			t.Fatalf("%+v", r)
		}
		select {
		case <-srv.closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("the connection is still open; %d PINGs unanswered", srv.pings.Load())
		}
		if srv.pings.Load() == 0 {
			t.Error("closed without a PING")
		}
	})

	t.Run("off", func(t *testing.T) {
		srv := newPingServer(t, false)
		ch := oneClusterApp(t, cluster(nil), serverEndpoint(t, srv.addr))
		if r := do(ch, "/"); r.code != 200 {
			t.Fatalf("%+v", r)
		}
		time.Sleep(300 * time.Millisecond)
		if n := srv.pings.Load(); n != 0 {
			t.Errorf("%d PINGs without http2KeepAlive", n)
		}
	})
}
