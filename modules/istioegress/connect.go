package istioegress

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// tunnelBufferSize is the copy buffer of a direction of a tunnel that
// cannot splice.
const tunnelBufferSize = 64 << 10

// serveConnect answers a CONNECT request: HTTP/1.1 (the connection is
// hijacked) or HTTP/2 (the stream carries the tunnel).
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request, entry *logEntry) error {
	// a CONNECT authority always has a port; r.Host is it for HTTP/1.1
	// and :authority for HTTP/2
	dest, err := parseDestination(r.Host, 0)
	if err != nil {
		entry.refuse("bad CONNECT target: " + err.Error())
		entry.status = http.StatusBadRequest
		http.Error(w, "istio_egress: "+err.Error(), http.StatusBadRequest)
		entry.write(h.logger)
		return nil
	}
	entry.dest = dest
	dec := h.decide(r.Context(), dest)
	if dec.refused {
		entry.refuse(dec.reason)
		entry.status = http.StatusForbidden
		http.Error(w, "istio_egress: "+dec.reason, http.StatusForbidden)
		entry.write(h.logger)
		return nil
	}
	entry.allow(dec.reason)

	upstream, dialed, err := h.dialAny(r.Context(), dec.dials, dec.viaRegistry)
	if err != nil {
		entry.reason += "; " + err.Error()
		entry.status = http.StatusBadGateway
		http.Error(w, "istio_egress: cannot connect to "+dest.String(), http.StatusBadGateway)
		entry.write(h.logger)
		return nil
	}
	entry.upstream = dialed
	entry.status = http.StatusOK
	defer func() { entry.write(h.logger) }()

	if r.ProtoMajor == 1 {
		return h.tunnelHTTP1(w, upstream, entry)
	}
	return h.tunnelHTTP2(w, r, upstream, entry)
}

// dialAny connects to the first of dials that answers. Registry endpoint
// lists start at a random one, so tunnels spread over the endpoints.
func (h *Handler) dialAny(ctx context.Context, dials []string, spread bool) (net.Conn, string, error) {
	start := 0
	if spread && len(dials) > 1 {
		start = rand.IntN(len(dials))
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(h.DialTimeout))
	defer cancel()
	var errs []error
	for i := range dials {
		dial := dials[(start+i)%len(dials)]
		network, address := "tcp", dial
		if path, ok := strings.CutPrefix(dial, "unix/"); ok {
			network, address = "unix", path
		}
		conn, err := h.dial(ctx, network, address)
		if err == nil {
			return conn, dial, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, "", errors.Join(errs...)
}

// tunnelHTTP1 takes the client connection over, answers 200 and copies
// bytes both ways. With Caddy's default protocols on a plain HTTP
// listener the hijacked connection is the *net.TCPConn itself, so both
// directions splice (see pipe).
func (h *Handler) tunnelHTTP1(w http.ResponseWriter, upstream net.Conn, entry *logEntry) error {
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		entry.status = http.StatusInternalServerError
		entry.reason += "; hijack: " + err.Error()
		return err
	}
	// the server's read and write deadlines must not cut the tunnel
	_ = client.SetDeadline(time.Time{})
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		upstream.Close()
		return nil
	}
	// bytes the client sent after the request head, already read into the
	// server's buffer; after them, reads go to the connection itself
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		written, err := upstream.Write(early)
		entry.bytesUp.Add(int64(written))
		if err != nil {
			client.Close()
			upstream.Close()
			return nil
		}
	}
	h.pipe(client, client, upstream, entry)
	return nil
}

// tunnelHTTP2 answers 200 on the stream and copies the request body to the
// destination and the destination to the response. A stream cannot be
// spliced: its bytes are HTTP/2 DATA frames.
func (h *Handler) tunnelHTTP2(w http.ResponseWriter, r *http.Request, upstream net.Conn, entry *logEntry) error {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		upstream.Close()
		return nil
	}
	h.pipe(r.Body, &flushWriter{w: w, rc: rc, body: r.Body}, upstream, entry)
	return nil
}

// flushWriter writes the downstream half of an HTTP/2 tunnel, flushing
// each write so bytes are not held back.
type flushWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	body io.Closer
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

// Close aborts the client half of the stream.
func (f *flushWriter) Close() error { return f.body.Close() }

// pipe copies client→upstream and upstream→client until both directions
// end. A direction that ends (EOF) half-closes its destination so the
// other direction may go on; an error or the idle timeout closes both.
func (h *Handler) pipe(fromClient io.Reader, toClient io.Writer, upstream net.Conn, entry *logEntry) {
	t := &tunnel{idle: time.Duration(h.IdleTimeout), upstream: upstream, toClient: toClient, entry: entry}
	t.lastActive.Store(time.Now().UnixNano())
	for _, src := range []io.Reader{fromClient, upstream} {
		if c, ok := interruptible(src); ok {
			t.interruptible = append(t.interruptible, c)
		}
	}
	h.logger.Debug("tunnel copy",
		zap.Bool("splice_up", spliceable(upstream, fromClient)),
		zap.Bool("splice_down", spliceable(toClient, upstream)))
	t.startWatch()
	defer t.stopWatch()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := t.copy(upstream, fromClient)
		entry.bytesUp.Add(n)
		if err != nil {
			t.closeAll()
			return
		}
		closeWrite(upstream)
	}()
	n, err := t.copy(toClient, upstream)
	entry.bytesDown.Add(n)
	if _, halfClose := toClient.(interface{ CloseWrite() error }); err != nil || !halfClose {
		// an HTTP/2 stream's response half ends only when the handler
		// returns, so the tunnel ends with the destination's side
		t.closeAll()
	} else {
		closeWrite(toClient)
	}
	wg.Wait()
	t.closeAll()
}

// probeWait bounds how long the idle watcher waits for interrupted copies
// to note the bytes they moved before it closes an idle tunnel.
const probeWait = time.Second

// aLongTimeAgo is a read deadline that makes a blocked read return now.
var aLongTimeAgo = time.Unix(1, 0)

// tunnel is the state shared by the two directions of a tunnel and its
// idle watcher.
//
// The idle timeout must not cost a deadline per read: a read deadline on
// every read, or a wrapper that notes each read, would stop the kernel
// from splicing. So a direction between two connections copies with one
// io.Copy (splice(2) between TCP sockets) and notes activity only when it
// returns. The watcher interrupts those copies with a past read deadline
// every quarter of the idle timeout: an interrupted copy returns the
// bytes it moved (none are lost: splice empties its pipe before it waits
// to read), notes them and goes on. When the notes say the tunnel has
// been quiet for the idle timeout, the watcher interrupts the copies once
// more and closes the tunnel if they still note nothing: it closes
// between 1 and 1.25 idle timeouts (plus probeWait) after the last byte.
// (A copy blocked writing to a peer that reads too slowly to drain it
// within probeWait notes nothing either, as a blocked write of the
// buffered copy did before.)
type tunnel struct {
	idle     time.Duration
	upstream net.Conn
	toClient io.Writer
	entry    *logEntry

	// lastActive is when a direction last noted bytes (Unix ns).
	lastActive atomic.Int64
	// probeGen counts the watcher's interruptions (see copy).
	probeGen atomic.Uint64

	// interruptible are the sources the watcher interrupts: those copied
	// with io.Copy, which notes no activity until it returns.
	interruptible []net.Conn

	mu         sync.Mutex // guards the fields below and the read deadlines the watcher sets
	timer      *time.Timer
	confirming bool // the notes said idle; the copies were interrupted to confirm it
	stopped    bool

	closeOnce sync.Once
}

// closeAll closes both ends.
func (t *tunnel) closeAll() {
	t.closeOnce.Do(func() {
		t.upstream.Close()
		if c, ok := t.toClient.(io.Closer); ok {
			c.Close()
		}
	})
}

func (t *tunnel) active() { t.lastActive.Store(time.Now().UnixNano()) }

func (t *tunnel) startWatch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timer = time.AfterFunc(t.next(0), t.watch)
}

func (t *tunnel) stopWatch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	t.timer.Stop()
}

// next is the time to the watcher's next run when the tunnel has been
// quiet for quiet (< t.idle).
func (t *tunnel) next(quiet time.Duration) time.Duration {
	wait := t.idle - quiet
	if len(t.interruptible) > 0 {
		wait = min(wait, t.idle/4)
	}
	return max(wait, time.Millisecond)
}

// watch closes the tunnel when no bytes moved for t.idle; see tunnel.
func (t *tunnel) watch() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	quiet := time.Since(time.Unix(0, t.lastActive.Load()))
	switch {
	case quiet >= t.idle && (t.confirming || len(t.interruptible) == 0):
		t.entry.idleClosed.Store(true)
		t.closeAll()
		return
	case quiet >= t.idle:
		t.confirming = true
		t.interrupt()
		t.timer.Reset(max(min(probeWait, t.idle/4), time.Millisecond))
		return
	}
	t.confirming = false
	if len(t.interruptible) > 0 {
		t.interrupt()
	}
	t.timer.Reset(t.next(quiet))
}

// interrupt makes the running io.Copy calls return, so they note the
// bytes they moved. t.mu is held.
func (t *tunnel) interrupt() {
	t.probeGen.Add(1)
	for _, c := range t.interruptible {
		_ = c.SetReadDeadline(aLongTimeAgo)
	}
}

// copy copies src to dst until src's EOF (a nil error) or an error. A
// source that is a connection is copied with io.Copy, which splices when
// both ends are sockets (TCP, unix); it notes activity when the watcher
// interrupts it. Other sources (an HTTP/2 request body, TLS) are copied
// with a buffer, noting activity at each read.
func (t *tunnel) copy(dst io.Writer, src io.Reader) (int64, error) {
	conn, ok := interruptible(src)
	if !ok {
		return copyActive(dst, src, t.active)
	}
	var written int64
	for {
		gen := t.probeGen.Load()
		n, err := io.Copy(dst, conn)
		written += n
		if n > 0 {
			t.active()
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		// the watcher interrupted the read; lift its deadline unless a
		// newer interruption came since this copy started, whose past
		// deadline must end the next copy too
		t.mu.Lock()
		if t.probeGen.Load() == gen {
			_ = conn.SetReadDeadline(time.Time{})
		}
		t.mu.Unlock()
	}
}

// interruptible returns src as a socket connection whose blocked reads a
// past read deadline ends without harm, if it is one.
func interruptible(src io.Reader) (net.Conn, bool) {
	switch c := src.(type) {
	case *net.TCPConn:
		return c, true
	case *net.UnixConn:
		return c, true
	}
	return nil, false
}

// spliceable reports whether io.Copy(dst, src) moves the bytes with
// splice(2), in the kernel.
func spliceable(dst io.Writer, src io.Reader) bool {
	if _, ok := interruptible(src); !ok {
		return false
	}
	switch dst.(type) {
	case *net.TCPConn:
		return true
	case *net.UnixConn:
		// TCP to a unix stream socket (the dials of unix/ endpoints)
		_, srcTCP := src.(*net.TCPConn)
		return srcTCP
	}
	return false
}

// copyActive copies src to dst like io.Copy, calling active after each
// read that got bytes. A clean EOF gives a nil error.
func copyActive(dst io.Writer, src io.Reader, active func()) (int64, error) {
	buf := make([]byte, tunnelBufferSize)
	var written int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			active()
			m, werr := dst.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			if m != n {
				return written, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// closeWrite half-closes c when it can (TCP, TLS, unix), else leaves it
// open for closeAll.
func closeWrite(c any) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// Interface guards
var _ io.Writer = (*flushWriter)(nil)
