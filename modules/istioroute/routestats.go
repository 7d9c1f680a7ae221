package istioroute

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Envoy's route statistics, for the match alternatives that set a stat
// prefix (HTTPMatchRequest.statPrefix): Envoy counts them under
// vhost.<virtual host>.route.<stat prefix>.*, which its Prometheus output
// turns into envoy_vhost_route_* series tagged with envoy_virtual_host and
// envoy_route. Like Envoy's, they count upstream requests: each attempt of
// a proxied request; redirects and direct responses are not counted.

var routeStatLabels = []string{"envoy_virtual_host", "envoy_route"}

// routeStatMetrics are the process-wide collectors (Caddy's registry is
// per configuration; see istioMetrics).
var routeStatMetrics = struct {
	once                  sync.Once
	rq                    *prometheus.CounterVec // by response code
	total, retry, timeout *prometheus.CounterVec
	completed             *prometheus.CounterVec
	time                  *prometheus.HistogramVec
	collectors            []prometheus.Collector
}{}

func initRouteStatMetrics() {
	m := &routeStatMetrics
	m.once.Do(func() {
		counter := func(name, help string, extra ...string) *prometheus.CounterVec {
			return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append(append([]string(nil), routeStatLabels...), extra...))
		}
		m.rq = counter("envoy_vhost_route_upstream_rq", "Upstream requests of the route, by response code.", "envoy_response_code")
		m.total = counter("envoy_vhost_route_upstream_rq_total", "Upstream requests of the route, retries included.")
		m.completed = counter("envoy_vhost_route_upstream_rq_completed", "Upstream requests of the route that got a response.")
		m.retry = counter("envoy_vhost_route_upstream_rq_retry", "Retries of the route's requests.")
		m.timeout = counter("envoy_vhost_route_upstream_rq_timeout", "Requests of the route that hit the route timeout.")
		m.time = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envoy_vhost_route_upstream_rq_time",
			Help:    "Upstream request time of the route in milliseconds.",
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000},
		}, routeStatLabels)
		m.collectors = []prometheus.Collector{m.rq, m.total, m.completed, m.retry, m.timeout, m.time}
	})
}

// routeStats are the series of one virtual host and stat prefix.
type routeStats struct {
	total, completed, retry, timeout prometheus.Counter
	time                             prometheus.Observer
	byCode                           *prometheus.CounterVec // curried with the route's labels
}

// newRouteStats registers the route statistics with ctx's metrics
// registry (once per configuration) and returns the series of vhost and
// prefix.
func newRouteStats(ctx caddy.Context, vhost, prefix string) (*routeStats, error) {
	initRouteStatMetrics()
	m := &routeStatMetrics
	reg := ctx.GetMetricsRegistry()
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, err
			}
		}
	}
	labels := prometheus.Labels{"envoy_virtual_host": vhost, "envoy_route": prefix}
	byCode, err := m.rq.CurryWith(labels)
	if err != nil {
		return nil, err
	}
	return &routeStats{
		total:     m.total.With(labels),
		completed: m.completed.With(labels),
		retry:     m.retry.With(labels),
		timeout:   m.timeout.With(labels),
		time:      m.time.With(labels),
		byCode:    byCode,
	}, nil
}

// record counts a finished request of the route: its attempts, the final
// response code (0: none) and whether the route timeout ended it.
func (s *routeStats) record(attempts, code int, timedOut bool, elapsed time.Duration) {
	if attempts == 0 {
		return // answered without an upstream request
	}
	s.total.Add(float64(attempts))
	if attempts > 1 {
		s.retry.Add(float64(attempts - 1))
	}
	if timedOut {
		s.timeout.Inc()
	}
	if code != 0 {
		s.completed.Inc()
		s.byCode.WithLabelValues(strconv.Itoa(code)).Inc()
		s.time.Observe(float64(elapsed) / float64(time.Millisecond))
	}
}
