package integration

import (
	"net/http"
	"testing"
	"time"
)

// The bookinfo fault-injection samples: aborts answer from the proxy without
// contacting the backend; a delay holds the request before forwarding it.
func TestFaultInjection(t *testing.T) {
	requireBinaries(t)

	// virtual-service-ratings-test-abort.yaml: jason gets HTTP 500 at 100%,
	// everyone else ratings v1.
	t.Run("ratings-test-abort", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		startCaddy(t, meshConfig(t, b, "virtual-service-ratings-test-abort.yaml"), meshListener)
		client := hostClient(t, meshListener)
		for i := 0; i < 10; i++ {
			expectNoBackend(t, "ratings, jason", get(t, client, "http://ratings:9080/ratings/0", "end-user", "jason"), http.StatusInternalServerError)
			expectBackend(t, "ratings", get(t, client, "http://ratings:9080/ratings/0"), "ratings", "v1")
		}
	})

	// fault-injection-details-v1.yaml (with its own DestinationRule, so
	// without destination-rule-all.yaml): every request to details is
	// aborted with 555; the second rule is unreachable.
	t.Run("fault-injection-details-v1", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		config := joinDocs(corpus(t, kubeBookinfo), corpus(t, networking+"fault-injection-details-v1.yaml"), workloadEntries(t, b))
		startCaddy(t, config, meshListener)
		client := hostClient(t, meshListener)
		for i := 0; i < 10; i++ {
			expectNoBackend(t, "details", get(t, client, "http://details:9080/details/0"), 555)
		}
		expectBackend(t, "reviews (no VirtualService)", get(t, client, "http://reviews:9080/"), "reviews", "")
	})

	// virtual-service-ratings-test-delay.yaml: jason's requests wait 7s, then
	// reach ratings v1; everyone else's are not delayed (not timed here).
	t.Run("ratings-test-delay", func(t *testing.T) {
		b := startBackends(t, bookinfoVersions...)
		startCaddy(t, meshConfig(t, b, "virtual-service-ratings-test-delay.yaml"), meshListener)
		client := hostClient(t, meshListener)
		client.Timeout = 30 * time.Second
		expectBackend(t, "ratings", get(t, client, "http://ratings:9080/ratings/0"), "ratings", "v1")
		start := time.Now()
		expectBackend(t, "ratings, jason", get(t, client, "http://ratings:9080/ratings/0", "end-user", "jason"), "ratings", "v1")
		if elapsed := time.Since(start); elapsed < 7*time.Second {
			t.Errorf("jason's request took %v, want the 7s fixedDelay first", elapsed)
		}
	})
}
