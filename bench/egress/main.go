// Command egress is the TCP end of bench/egress.sh: a server that sinks
// or sources bytes, and a client that moves them directly or through an
// HTTP/1.1 CONNECT tunnel (the istio_egress handler) and reports MB/s.
//
//	egress serve -listen 127.0.0.1:18310
//	egress client -target 127.0.0.1:18310 -mode up -size 100MB
//	egress client -proxy 127.0.0.1:18300 -target 127.0.0.1:18310 -mode down
//	egress forward -listen 127.0.0.1:18320 -to 127.0.0.1:18310
//
// forward is the reference for the tunnel: the least a TCP relay can do in
// Go, io.Copy both ways between two *net.TCPConn (so splice(2) on Linux,
// as the tunnel does), without HTTP, policy or logging. What it cannot
// reach on a machine, no proxy written in Go reaches there.
//
// Protocol, per connection: the client sends one byte, 'u' or 'd', and
// an 8-byte big-endian size. 'u': the client sends size bytes and
// half-closes; the server counts them and answers with the 8-byte count.
// 'd': the server sends size bytes and closes. The client's clock runs
// from the first byte of that header (after the tunnel is open) to the
// count (up) or the last byte (down), so both figures measure the data
// path only. The client prints one JSON object.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const bufferSize = 256 << 10

func main() {
	log.SetFlags(0)
	log.SetPrefix("egress: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: egress serve|client [flags]")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "client":
		client(os.Args[2:])
	case "forward":
		forward(os.Args[2:])
	default:
		log.Fatalf("unknown command %q (serve, client or forward)", os.Args[1])
	}
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18310", "address to listen on")
	_ = fs.Parse(args)
	acceptLoop(*listen, func(conn net.Conn) {
		defer conn.Close()
		if err := handle(conn); err != nil {
			log.Printf("%s: %v", conn.RemoteAddr(), err)
		}
	})
}

// acceptLoop serves each connection to addr on its own goroutine.
func acceptLoop(addr string, serveConn func(net.Conn)) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serveConn(conn)
	}
}

func handle(conn net.Conn) error {
	var head [9]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return err
	}
	size := int64(binary.BigEndian.Uint64(head[1:]))
	switch head[0] {
	case 'u':
		n, err := drain(conn)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("got %d bytes, want %d", n, size)
		}
		var count [8]byte
		binary.BigEndian.PutUint64(count[:], uint64(n))
		_, err = conn.Write(count[:])
		return err
	case 'd':
		return send(conn, size)
	}
	return fmt.Errorf("unknown mode %q", head[0])
}

// drain reads r to its EOF with one large buffer and counts the bytes.
// (io.Copy to io.Discard would read 8 KiB at a time: io.Discard's
// ReadFrom uses its own small buffers.)
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, bufferSize)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// send writes size bytes from one buffer, without a copy per write.
func send(conn net.Conn, size int64) error {
	buf := make([]byte, bufferSize)
	for size > 0 {
		chunk := buf[:min(int64(len(buf)), size)]
		n, err := conn.Write(chunk)
		size -= int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

func forward(args []string) {
	fs := flag.NewFlagSet("forward", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18320", "address to listen on")
	to := fs.String("to", "127.0.0.1:18310", "where each connection is relayed")
	_ = fs.Parse(args)
	acceptLoop(*listen, func(conn net.Conn) { relay(conn.(*net.TCPConn), *to) })
}

// relay copies both ways until both sides have half-closed, as the
// tunnel does.
func relay(client *net.TCPConn, to string) {
	defer client.Close()
	conn, err := net.Dial("tcp", to)
	if err != nil {
		log.Print(err)
		return
	}
	upstream := conn.(*net.TCPConn)
	defer upstream.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(upstream, client) // splice(2) on Linux
		_ = upstream.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(client, upstream)
	_ = client.CloseWrite()
	<-done
}

// result is what the client prints.
type result struct {
	Mode    string  `json:"mode"`
	Path    string  `json:"path"` // direct or tunnel
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MBps    float64 `json:"mb_per_s"` // 10^6 bytes per second
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	proxy := fs.String("proxy", "", "CONNECT through this HTTP proxy (host:port); empty: direct")
	target := fs.String("target", "127.0.0.1:18310", "the server")
	mode := fs.String("mode", "up", "up (client sends) or down (server sends)")
	sizeFlag := fs.String("size", "100MB", "bytes to move: N, NkB, NMB or NGB (powers of 10)")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound on the whole transfer")
	_ = fs.Parse(args)
	size, err := parseSize(*sizeFlag)
	if err != nil {
		log.Fatal(err)
	}
	if *mode != "up" && *mode != "down" {
		log.Fatalf("mode %q: up or down", *mode)
	}
	conn, rest, err := open(*proxy, *target, *timeout)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(*timeout))

	var head [9]byte
	head[0] = (*mode)[0]
	binary.BigEndian.PutUint64(head[1:], uint64(size))
	start := time.Now()
	if _, err := conn.Write(head[:]); err != nil {
		log.Fatal(err)
	}
	var moved int64
	switch *mode {
	case "up":
		if err := send(conn, size); err != nil {
			log.Fatal(err)
		}
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			log.Fatal(err)
		}
		var count [8]byte
		if _, err := io.ReadFull(rest, count[:]); err != nil {
			log.Fatalf("reading the server's count: %v", err)
		}
		moved = int64(binary.BigEndian.Uint64(count[:]))
	case "down":
		moved, err = drain(rest)
		if err != nil {
			log.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	if moved != size {
		log.Fatalf("moved %d bytes, want %d", moved, size)
	}
	path := "direct"
	if *proxy != "" {
		path = "tunnel"
	}
	out, _ := json.Marshal(result{Mode: *mode, Path: path, Bytes: moved, Seconds: elapsed.Seconds(),
		MBps: float64(moved) / elapsed.Seconds() / 1e6})
	fmt.Println(string(out))
}

// open connects to target, through proxy's CONNECT when proxy is set. It
// returns the connection and the reader of what the server sends (the
// tunnel's response reader may hold bytes already).
func open(proxy, target string, timeout time.Duration) (net.Conn, io.Reader, error) {
	if proxy == "" {
		conn, err := net.DialTimeout("tcp", target, timeout)
		return conn, conn, err
	}
	conn, err := net.DialTimeout("tcp", proxy, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, bufferSize)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("CONNECT: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, nil, fmt.Errorf("CONNECT %s: %s %s", target, resp.Status, strings.TrimSpace(string(body)))
	}
	if br.Buffered() == 0 {
		// no bytes held back: read the connection itself
		return conn, conn, nil
	}
	return conn, br, nil
}

func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		factor int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n <= 0 {
				return 0, errors.New("size " + s + ": want a positive N, NkB, NMB or NGB")
			}
			return n * u.factor, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("size " + s + ": want a positive N, NkB, NMB or NGB")
	}
	return n, nil
}
