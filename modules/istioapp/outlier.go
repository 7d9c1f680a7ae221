package istioapp

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Outlier detection defaults, as Istio writes them.
const (
	defaultOutlierInterval         = 10 * time.Second
	defaultOutlierBaseEjectionTime = 30 * time.Second
	defaultOutlierMaxEjectionPct   = 10
	// envoyMaxEjectionTime is Envoy's default max_ejection_time, which
	// Istio leaves unset: an ejection lasts at most this long (or the base
	// ejection time, if longer).
	envoyMaxEjectionTime = 300 * time.Second
)

// attemptResult is the outcome of one attempt at an endpoint, as outlier
// detection sees it.
type attemptResult int

const (
	// resultResponse is a response from the endpoint (its status is
	// given apart).
	resultResponse attemptResult = iota
	// resultConnectFailed is a failed dial (Envoy's LOCAL_ORIGIN_CONNECT_FAILED).
	resultConnectFailed
	// resultTimeout is an attempt that timed out before the response
	// headers (LOCAL_ORIGIN_TIMEOUT).
	resultTimeout
	// resultReset is a connection reset or closed before the response
	// headers (LOCAL_ORIGIN_NO_HTTP_RESPONSE).
	resultReset
)

// localOriginStatus is the HTTP status Envoy maps a local-origin failure to
// when local-origin and external errors are not split.
func localOriginStatus(res attemptResult) int {
	switch res {
	case resultTimeout:
		return 504
	case resultReset:
		return 502
	default:
		return 503
	}
}

// outlierDetector is Envoy's outlier detector for one cluster: consecutive
// error counters per endpoint (dial address), ejection, and the interval
// sweep that returns ejected endpoints. It is shared by the configurations
// that load the same cluster with the same settings, so a reload keeps it
// (see clusterStates).
type outlierDetector struct {
	cfg       OutlierDetection
	interval  time.Duration
	base      time.Duration
	maxEject  time.Duration
	errorCode func(status int) bool

	now func() time.Time

	mu    sync.Mutex
	hosts map[string]*hostHealth
	// ejectedCount mirrors the number of ejected hosts so that the
	// request path can skip the lock when nothing is ejected.
	ejectedCount atomic.Int32

	// users counts the configurations using the detector; the sweep runs
	// while it is above zero.
	users int
	stop  chan struct{}
}

// hostHealth is the outlier state of one endpoint.
type hostHealth struct {
	consecutive5xx     uint32
	consecutiveGateway uint32
	consecutiveLocal   uint32

	ejected   bool
	ejectedAt time.Time
	// ejections is the multiplier of the base ejection time: raised by an
	// ejection, lowered by each sweep that finds the endpoint healthy.
	ejections uint32
}

// newOutlierDetector returns a detector for cfg with Istio's defaults
// filled in, for the endpoints dials.
func newOutlierDetector(cfg OutlierDetection, dials []string) *outlierDetector {
	d := &outlierDetector{
		cfg:      cfg,
		interval: time.Duration(cfg.Interval),
		base:     time.Duration(cfg.BaseEjectionTime),
		now:      time.Now,
		hosts:    make(map[string]*hostHealth),
	}
	if d.interval <= 0 {
		d.interval = defaultOutlierInterval
	}
	if d.base <= 0 {
		d.base = defaultOutlierBaseEjectionTime
	}
	d.maxEject = max(envoyMaxEjectionTime, d.base)
	if d.cfg.MaxEjectionPercent == 0 {
		d.cfg.MaxEjectionPercent = defaultOutlierMaxEjectionPct
	}
	if len(cfg.ErrorStatusCodes) > 0 {
		codes := slices.Clone(cfg.ErrorStatusCodes)
		d.errorCode = func(status int) bool { return slices.Contains(codes, status) }
	} else {
		d.errorCode = func(status int) bool { return status >= 500 && status <= 599 }
	}
	d.setHosts(dials)
	return d
}

// setHosts makes dials the endpoints of the detector: endpoints that stay
// keep their state, new ones start healthy, removed ones are forgotten.
func (d *outlierDetector) setHosts(dials []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	hosts := make(map[string]*hostHealth, len(dials))
	for _, dial := range dials {
		if h, ok := d.hosts[dial]; ok {
			hosts[dial] = h
		} else {
			hosts[dial] = new(hostHealth)
		}
	}
	d.hosts = hosts
	d.recountEjected()
}

// recountEjected refreshes ejectedCount; d.mu must be held.
func (d *outlierDetector) recountEjected() {
	n := 0
	for _, h := range d.hosts {
		if h.ejected {
			n++
		}
	}
	d.ejectedCount.Store(int32(n))
}

// record counts the outcome of one attempt at dial: status for a response,
// or a local-origin failure.
func (d *outlierDetector) record(dial string, res attemptResult, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h := d.hosts[dial]
	if h == nil {
		return
	}
	if res != resultResponse {
		if d.cfg.SplitExternalLocalOriginErrors {
			h.consecutiveLocal++
			if d.cfg.ConsecutiveLocalOriginFailures > 0 && h.consecutiveLocal >= d.cfg.ConsecutiveLocalOriginFailures {
				h.consecutiveLocal = 0
				d.eject(h)
			}
			return
		}
		status = localOriginStatus(res)
	} else if d.cfg.SplitExternalLocalOriginErrors {
		// the connection worked: Envoy's LOCAL_ORIGIN_CONNECT_SUCCESS
		h.consecutiveLocal = 0
	}

	if status == 502 || status == 503 || status == 504 {
		h.consecutiveGateway++
		if d.cfg.ConsecutiveGatewayErrors > 0 && h.consecutiveGateway >= d.cfg.ConsecutiveGatewayErrors {
			h.consecutiveGateway = 0
			d.eject(h)
		}
	} else {
		h.consecutiveGateway = 0
	}
	if d.errorCode(status) {
		h.consecutive5xx++
		if d.cfg.Consecutive5xxErrors > 0 && h.consecutive5xx >= d.cfg.Consecutive5xxErrors {
			h.consecutive5xx = 0
			d.eject(h)
		}
	} else {
		h.consecutive5xx = 0
	}
}

// eject takes h out unless it is out already or the ejected share would
// pass MaxEjectionPercent (one endpoint can always be ejected); d.mu must
// be held.
func (d *outlierDetector) eject(h *hostHealth) {
	if h.ejected {
		return
	}
	ejected := int(d.ejectedCount.Load())
	if ejected > 0 && (ejected+1)*100 > int(d.cfg.MaxEjectionPercent)*len(d.hosts) {
		return
	}
	h.ejected = true
	h.ejectedAt = d.now()
	h.ejections++
	d.ejectedCount.Add(1)
	// a fresh run of errors is needed for the next ejection
	h.consecutive5xx, h.consecutiveGateway, h.consecutiveLocal = 0, 0, 0
}

// sweep is the interval timer's work: endpoints whose ejection is over
// return, and the ejection multiplier of healthy endpoints decreases.
func (d *outlierDetector) sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for _, h := range d.hosts {
		if h.ejected {
			if now.Sub(h.ejectedAt) >= min(d.base*time.Duration(h.ejections), d.maxEject) {
				h.ejected = false
			}
			continue
		}
		if h.ejections > 0 {
			h.ejections--
		}
	}
	d.recountEjected()
}

// ejected returns the set of ejected endpoints, nil when none is.
func (d *outlierDetector) ejected() map[string]bool {
	if d.ejectedCount.Load() == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]bool, d.ejectedCount.Load())
	for dial, h := range d.hosts {
		if h.ejected {
			out[dial] = true
		}
	}
	return out
}

// acquire registers a user; the first starts the sweep.
func (d *outlierDetector) acquire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users++
	if d.users == 1 {
		d.stop = make(chan struct{})
		go d.run(d.interval, d.stop)
	}
}

// release drops a user; the last stops the sweep.
func (d *outlierDetector) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users--
	if d.users == 0 {
		close(d.stop)
		d.stop = nil
	}
}

// run sweeps every interval until stop is closed.
func (d *outlierDetector) run(interval time.Duration, stop chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			d.sweep()
		case <-stop:
			return
		}
	}
}
