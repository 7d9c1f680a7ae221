package istioroute

import (
	"errors"
	"io"
	"sync"
)

// replayBody lets a request body be sent more than once (to each retry
// and to mirrors) without reading it all first: as Envoy, it streams the
// body to the current attempt while keeping a copy, up to a limit. A
// request that streams (e.g. a gRPC stream waiting for the server's
// messages) thus flows as it comes. Once the copy would exceed the limit,
// it is no longer kept, the current attempt goes on reading the source
// directly, and no other attempt can start.
//
// Each attempt reads through its own reader. When the next attempt
// starts, the previous one's reader stops working (the HTTP transport may
// still be writing the old request in the background); data it was
// reading at that moment is still kept, so nothing is lost.
type replayBody struct {
	mu   sync.Mutex
	cond sync.Cond

	src   io.Reader
	limit int
	buf   []byte
	// srcErr is the error (io.EOF at the end) the source returned.
	srcErr error
	// overflow means buf no longer holds everything read from src.
	overflow bool
	// reading is true while a reader is in src.Read, without the lock.
	reading bool
	// attempt is the number of the attempt whose reader may read src.
	attempt int
	// closed means the exchange is over: mirrors waiting for more of the
	// body give up.
	closed bool
}

var (
	errAttemptOver     = errors.New("request body: a later attempt took over")
	errBodyNotReplayed = errors.New("request body: too large, or not read, to be copied")
)

// newReplayBody keeps up to limit bytes of src, whose length is
// contentLength (-1 if unknown).
func newReplayBody(src io.Reader, contentLength int64, limit int) *replayBody {
	rb := &replayBody{src: src, limit: limit, overflow: contentLength > int64(limit)}
	rb.cond.L = &rb.mu
	return rb
}

// replayable reports whether another attempt may still get the body.
func (rb *replayBody) replayable() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return !rb.overflow
}

// clientFailed reports whether reading the body from the client failed
// (not its end): another attempt would fail the same way.
func (rb *replayBody) clientFailed() bool {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.srcErr != nil && rb.srcErr != io.EOF
}

// nextAttempt returns the body reader of a new attempt, or false when the
// body can no longer be sent again.
func (rb *replayBody) nextAttempt() (io.ReadCloser, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if rb.overflow && rb.attempt > 0 {
		return nil, false
	}
	rb.attempt++
	rb.cond.Broadcast()
	return &replayReader{rb: rb, attempt: rb.attempt}, true
}

// mirrorReader returns a reader of the kept copy for a mirror: it follows
// what the attempts read, and fails if the copy is not complete.
func (rb *replayBody) mirrorReader() io.ReadCloser {
	return &replayReader{rb: rb, mirror: true}
}

// close ends the exchange.
func (rb *replayBody) close() {
	rb.mu.Lock()
	rb.closed = true
	rb.cond.Broadcast()
	rb.mu.Unlock()
}

// replayReader is one attempt's (or one mirror's) view of a replayBody.
type replayReader struct {
	rb      *replayBody
	attempt int
	mirror  bool
	pos     int
}

func (r *replayReader) Read(p []byte) (int, error) {
	rb := r.rb
	rb.mu.Lock()
	defer rb.mu.Unlock()
	for {
		if !r.mirror && r.attempt != rb.attempt {
			return 0, errAttemptOver
		}
		if r.pos < len(rb.buf) {
			n := copy(p, rb.buf[r.pos:])
			r.pos += n
			return n, nil
		}
		if rb.srcErr != nil && !(r.mirror && rb.overflow) {
			return 0, rb.srcErr
		}
		if r.mirror {
			if rb.overflow || rb.closed {
				return 0, errBodyNotReplayed
			}
			rb.cond.Wait()
			continue
		}
		if rb.reading {
			rb.cond.Wait()
			continue
		}
		if len(p) == 0 {
			return 0, nil
		}
		n, err := r.readSource(p)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// readSource reads from the source without holding the lock (a streaming
// client may take its time) and keeps what it read. It is called with the
// lock held and returns with it held.
func (r *replayReader) readSource(p []byte) (int, error) {
	rb := r.rb
	rb.reading = true
	keep := !rb.overflow
	rb.mu.Unlock()
	n, err := rb.src.Read(p)
	rb.mu.Lock()
	rb.reading = false
	rb.cond.Broadcast()
	stale := r.attempt != rb.attempt
	if n > 0 && (keep || stale) {
		// Data read for an attempt that is over is kept even past the
		// limit, for the attempt that took over.
		rb.buf = append(rb.buf, p[:n]...)
		if len(rb.buf) > rb.limit {
			rb.overflow = true
		}
		r.pos = len(rb.buf)
	}
	if err != nil {
		rb.srcErr = err
	}
	if stale {
		return 0, errAttemptOver
	}
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// Close does not close the source: the HTTP server does, and other
// attempts may still need it.
func (r *replayReader) Close() error { return nil }
