package istio

import (
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-istio/caddy-istio/adapters/istio/istioyaml"
	"github.com/caddy-istio/caddy-istio/modules/istioapp"
)

// Istio's and Envoy's outlier detection defaults, written explicitly.
const (
	defaultConsecutive5xxErrors = 5 // Envoy's, kept by Istio unless consecutive5xxErrors is set
	defaultOutlierInterval      = 10 * time.Second
	defaultBaseEjectionTime     = 30 * time.Second
	defaultMaxEjectionPercent   = 10
)

// outlierDetectionOf is the Cluster.OutlierDetection of od, nil when od is
// nil, with the defaults Istio leaves to Envoy written explicitly:
// consecutive 5xx errors 5 (an explicit 0 disables), gateway errors off,
// interval 10s, base ejection time 30s, max ejection 10%, min health 0%
// (panic mode off). The deprecated consecutiveErrors is ignored, as by
// current Istio (validation warns about it).
func outlierDetectionOf(od *networking.OutlierDetection) *istioapp.OutlierDetection {
	if od == nil {
		return nil
	}
	out := &istioapp.OutlierDetection{
		Consecutive5xxErrors:           defaultConsecutive5xxErrors,
		SplitExternalLocalOriginErrors: od.GetSplitExternalLocalOriginErrors(),
		Interval:                       caddy.Duration(defaultOutlierInterval),
		BaseEjectionTime:               caddy.Duration(defaultBaseEjectionTime),
		MaxEjectionPercent:             defaultMaxEjectionPercent,
		MinHealthPercent:               uint32(max(od.GetMinHealthPercent(), 0)),
	}
	if v := od.GetConsecutive_5XxErrors(); v != nil {
		out.Consecutive5xxErrors = v.GetValue()
	}
	if v := od.GetConsecutiveGatewayErrors(); v != nil {
		out.ConsecutiveGatewayErrors = v.GetValue()
	}
	if v := od.GetConsecutiveLocalOriginFailures(); v != nil && od.GetSplitExternalLocalOriginErrors() {
		out.ConsecutiveLocalOriginFailures = v.GetValue()
	}
	if d := od.GetInterval(); d != nil && d.AsDuration() > 0 {
		out.Interval = caddy.Duration(d.AsDuration())
	}
	if d := od.GetBaseEjectionTime(); d != nil && d.AsDuration() > 0 {
		out.BaseEjectionTime = caddy.Duration(d.AsDuration())
	}
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = uint32(p)
	}
	for _, code := range od.GetOutlierDetectionHttpErrorCodes() {
		out.ErrorStatusCodes = append(out.ErrorStatusCodes, int(code))
	}
	return out
}

// checkOutlierDetection warns about the outlier detection settings that
// have no effect.
func (t *translator) checkOutlierDetection(obj *istioyaml.Object, path string, od *networking.OutlierDetection) {
	if od.GetFailurePercentageThreshold() != nil {
		t.warn(obj, path+".failurePercentageThreshold", "ignored, as by Istio, which does not send it to Envoy")
	}
	if od.GetConsecutiveLocalOriginFailures() != nil && !od.GetSplitExternalLocalOriginErrors() {
		t.warn(obj, path+".consecutiveLocalOriginFailures", "ignored: it applies only with splitExternalLocalOriginErrors true")
	}
}
