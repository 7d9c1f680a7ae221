// Command backend serves stand-ins for the Istio bookinfo services so that
// routing through Caddy can be seen: every response names the service and
// version that answered.
//
//	backend -listen productpage/v1=127.0.0.1:19080 -listen reviews-v2=127.0.0.1:19082
//
// Each -listen is SERVICE/VERSION=ADDRESS (or SERVICE-VERSION=ADDRESS, split
// at the first "-"). Port 0 picks a free port. Once every listener is bound
// the program prints one line per listener,
//
//	listening SERVICE VERSION ADDRESS
//
// followed by "ready", so scripts and tests can learn the chosen ports.
//
// Every request gets status 200, the header x-bookinfo-version (and
// x-bookinfo-service) and a JSON body
//
//	{"service":..,"version":..,"method":..,"path":..,"query":..,"host":..,"proto":..,"headers":{..}}
//
// with these paths treated specially:
//
//	/status/CODE      answer with status CODE (100 < CODE < 600) instead of 200
//	/delay/DURATION   wait DURATION (Go syntax, at most 1m) before answering
//	/ws               WebSocket (RFC 6455) echo of every message
package main

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
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
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// instance is one service version served on one address.
type instance struct {
	Service string
	Version string
	Addr    string
}

// listenFlags collects repeated -listen flags.
type listenFlags []instance

func (l *listenFlags) String() string {
	parts := make([]string, 0, len(*l))
	for _, in := range *l {
		parts = append(parts, in.Service+"/"+in.Version+"="+in.Addr)
	}
	return strings.Join(parts, " ")
}

func (l *listenFlags) Set(value string) error {
	in, err := parseInstance(value)
	if err != nil {
		return err
	}
	*l = append(*l, in)
	return nil
}

// parseInstance parses SERVICE/VERSION=ADDRESS or SERVICE-VERSION=ADDRESS.
func parseInstance(value string) (instance, error) {
	name, addr, ok := strings.Cut(value, "=")
	if !ok || addr == "" {
		return instance{}, fmt.Errorf("listen %q: want SERVICE/VERSION=ADDRESS", value)
	}
	sep := "/"
	if !strings.Contains(name, "/") {
		sep = "-"
	}
	service, version, ok := strings.Cut(name, sep)
	if !ok || service == "" || version == "" {
		return instance{}, fmt.Errorf("listen %q: want SERVICE/VERSION=ADDRESS", value)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return instance{}, fmt.Errorf("listen %q: %v", value, err)
	}
	return instance{Service: service, Version: version, Addr: addr}, nil
}

func main() {
	var listens listenFlags
	flag.Var(&listens, "listen", "SERVICE/VERSION=HOST:PORT to serve (repeatable; port 0 picks a free port)")
	flag.Parse()
	if len(listens) == 0 {
		fmt.Fprintln(os.Stderr, "backend: at least one -listen is required")
		flag.Usage()
		os.Exit(2)
	}

	listeners := make([]net.Listener, len(listens))
	for i, in := range listens {
		ln, err := net.Listen("tcp", in.Addr)
		if err != nil {
			log.Fatalf("backend: %s/%s: %v", in.Service, in.Version, err)
		}
		listeners[i] = ln
		listens[i].Addr = ln.Addr().String()
	}

	servers := make([]*http.Server, len(listens))
	var wg sync.WaitGroup
	for i, in := range listens {
		servers[i] = &http.Server{
			Handler:           &handler{instance: in},
			ReadHeaderTimeout: 10 * time.Second,
		}
		wg.Add(1)
		go func(srv *http.Server, ln net.Listener) {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Printf("backend: %v", err)
			}
		}(servers[i], listeners[i])
		fmt.Printf("listening %s %s %s\n", in.Service, in.Version, in.Addr)
	}
	fmt.Println("ready")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(ctx)
	}
	wg.Wait()
}

// reply is the JSON body of every plain HTTP response.
type reply struct {
	Service string            `json:"service"`
	Version string            `json:"version"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query,omitempty"`
	Host    string            `json:"host"`
	Proto   string            `json:"proto"`
	Headers map[string]string `json:"headers"`
}

// handler answers for one service version.
type handler struct {
	instance instance
}

// maxDelay bounds /delay so that a mistyped duration cannot hang a test.
const maxDelay = time.Minute

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-bookinfo-service", h.instance.Service)
	w.Header().Set("x-bookinfo-version", h.instance.Version)

	status := http.StatusOK
	switch {
	case r.URL.Path == "/ws" && isWebSocketUpgrade(r):
		serveWebSocketEcho(w, r)
		return
	case strings.HasPrefix(r.URL.Path, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil || code <= 100 || code >= 600 {
			http.Error(w, "bad status code", http.StatusBadRequest)
			return
		}
		status = code
	case strings.HasPrefix(r.URL.Path, "/delay/"):
		delay, err := time.ParseDuration(strings.TrimPrefix(r.URL.Path, "/delay/"))
		if err != nil || delay < 0 || delay > maxDelay {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}

	body := reply{
		Service: h.instance.Service,
		Version: h.instance.Version,
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Proto:   r.Proto,
		Headers: make(map[string]string, len(r.Header)),
	}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body.Headers[strings.ToLower(name)] = strings.Join(r.Header.Values(name), ",")
	}
	// Drain the request body so keep-alive connections stay usable.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}

// isWebSocketUpgrade reports whether r asks for a WebSocket connection.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, value := range h.Values(name) {
		for _, part := range strings.Split(value, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// webSocketGUID is the fixed key suffix of RFC 6455 section 1.3.
const webSocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// webSocketAccept is the Sec-WebSocket-Accept value for a client key.
func webSocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + webSocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// maxFramePayload bounds one WebSocket frame; the echo is for tests and demos.
const maxFramePayload = 1 << 20

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// serveWebSocketEcho completes the handshake and echoes every data frame
// with its opcode and FIN bit, answers pings, and echoes the close frame.
func serveWebSocketEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || r.Header.Get("Sec-WebSocket-Version") != "13" {
		http.Error(w, "bad websocket handshake", http.StatusBadRequest)
		return
	}
	hijacker, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket needs HTTP/1.1", http.StatusBadRequest)
		return
	}
	conn, rw, err := hijacker.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()

	// The handshake response carries the bookinfo headers too, so a client
	// can see which version took the connection.
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\n"+
		"x-bookinfo-service: %s\r\nx-bookinfo-version: %s\r\n\r\n",
		webSocketAccept(key), w.Header().Get("x-bookinfo-service"), w.Header().Get("x-bookinfo-version"))
	if err := rw.Flush(); err != nil {
		return
	}

	for {
		fin, opcode, payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		switch opcode {
		case opPing:
			opcode = opPong
		case opPong:
			continue
		}
		if err := writeFrame(rw.Writer, fin, opcode, payload); err != nil {
			return
		}
		if err := rw.Flush(); err != nil || opcode == opClose {
			return
		}
	}
}

// readFrame reads one client frame and unmasks its payload.
func readFrame(r io.Reader) (fin bool, opcode byte, payload []byte, err error) {
	var head [2]byte
	if _, err = io.ReadFull(r, head[:]); err != nil {
		return
	}
	fin = head[0]&0x80 != 0
	opcode = head[0] & 0x0F
	masked := head[1]&0x80 != 0
	length := uint64(head[1] & 0x7F)
	switch length {
	case 126:
		var ext [2]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return
		}
		length = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err = io.ReadFull(r, ext[:]); err != nil {
			return
		}
		length = binary.BigEndian.Uint64(ext[:])
	}
	if length > maxFramePayload {
		err = fmt.Errorf("frame of %d bytes exceeds %d", length, maxFramePayload)
		return
	}
	var mask [4]byte
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return
		}
	}
	payload = make([]byte, length)
	if _, err = io.ReadFull(r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i%4]
		}
	}
	return
}

// writeFrame writes one unmasked (server to client) frame.
func writeFrame(w io.Writer, fin bool, opcode byte, payload []byte) error {
	head := make([]byte, 0, 10)
	first := opcode
	if fin {
		first |= 0x80
	}
	head = append(head, first)
	switch n := len(payload); {
	case n < 126:
		head = append(head, byte(n))
	case n <= 0xFFFF:
		head = append(head, 126)
		head = binary.BigEndian.AppendUint16(head, uint16(n))
	default:
		head = append(head, 127)
		head = binary.BigEndian.AppendUint64(head, uint64(n))
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}
