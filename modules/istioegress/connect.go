package istioegress

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tunnelBufferSize is the copy buffer of each direction of a tunnel.
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
// bytes both ways.
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
	var fromClient io.Reader = client
	if n := brw.Reader.Buffered(); n > 0 {
		// bytes the client sent after the request head, already read
		fromClient = io.MultiReader(io.LimitReader(brw.Reader, int64(n)), client)
	}
	h.pipe(fromClient, client, upstream, entry)
	return nil
}

// tunnelHTTP2 answers 200 on the stream and copies the request body to the
// destination and the destination to the response.
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
	idle := time.Duration(h.IdleTimeout)
	var closeOnce sync.Once
	closeAll := func() {
		closeOnce.Do(func() {
			upstream.Close()
			if c, ok := toClient.(io.Closer); ok {
				c.Close()
			}
		})
	}
	// the timer checks the time of the last activity when it fires, so a
	// read only stores a timestamp
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	var (
		timerMu sync.Mutex // the callback may run before timer is set
		timer   *time.Timer
	)
	timerMu.Lock()
	timer = time.AfterFunc(idle, func() {
		timerMu.Lock()
		defer timerMu.Unlock()
		quiet := time.Since(time.Unix(0, lastActive.Load()))
		if quiet >= idle {
			entry.idleClosed.Store(true)
			closeAll()
			return
		}
		timer.Reset(idle - quiet)
	})
	timerMu.Unlock()
	defer func() {
		timerMu.Lock()
		timer.Stop()
		timerMu.Unlock()
	}()
	active := func() { lastActive.Store(time.Now().UnixNano()) }

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := copyActive(upstream, fromClient, active)
		entry.bytesUp.Add(n)
		if err != nil {
			closeAll()
			return
		}
		closeWrite(upstream)
	}()
	n, err := copyActive(toClient, upstream, active)
	entry.bytesDown.Add(n)
	if _, halfClose := toClient.(interface{ CloseWrite() error }); err != nil || !halfClose {
		// an HTTP/2 stream's response half ends only when the handler
		// returns, so the tunnel ends with the destination's side
		closeAll()
	} else {
		closeWrite(toClient)
	}
	wg.Wait()
	closeAll()
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
