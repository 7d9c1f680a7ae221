package istioapp

import (
	"encoding/json"
	"sync"
	"time"
)

// clusterStates keeps what a cluster learns at runtime across config
// reloads, which rebuild the app: when endpoints joined (for slow start)
// and outlier detection state. Entries are counted by the provisioned
// configurations that use them and dropped with the last one.
var clusterStates = struct {
	sync.Mutex
	byName map[string]*clusterState
}{byName: make(map[string]*clusterState)}

// clusterState is the runtime state of the clusters of one name.
type clusterState struct {
	users int

	// addedAt is when each endpoint (dial) was first seen in the cluster;
	// the zero time for the endpoints the cluster was created with.
	addedAt map[string]time.Time

	// outlierKey is the JSON of the OutlierDetection settings outlier
	// was made for: changed settings start afresh.
	outlierKey string
	outlier    *outlierDetector
}

// stateLease is one configuration's use of a clusterState.
type stateLease struct {
	name    string
	outlier *outlierDetector
}

// acquireClusterState registers a use of the state of cluster c with the
// endpoints dials. It returns when each endpoint joined: the zero time for
// the endpoints present when the state is created, since Envoy does not
// slow-start the hosts of a new cluster, only hosts added to it later;
// now for an endpoint first seen in a later configuration. And the outlier
// detector (nil when c has no outlier detection), whose sweep runs until
// the lease is released.
func acquireClusterState(c *Cluster, dials []string, now time.Time) (addedAt map[string]time.Time, lease *stateLease) {
	clusterStates.Lock()
	defer clusterStates.Unlock()
	st := clusterStates.byName[c.Name]
	created := st == nil
	if created {
		st = &clusterState{addedAt: map[string]time.Time{}}
		clusterStates.byName[c.Name] = st
	}
	st.users++

	addedAt = make(map[string]time.Time, len(dials))
	for _, dial := range dials {
		switch t, ok := st.addedAt[dial]; {
		case ok:
			addedAt[dial] = t
		case created:
			addedAt[dial] = time.Time{}
		default:
			addedAt[dial] = now
		}
	}
	// endpoints gone from the newest configuration are forgotten
	st.addedAt = addedAt

	lease = &stateLease{name: c.Name}
	if c.OutlierDetection != nil {
		keyJSON, _ := json.Marshal(c.OutlierDetection)
		key := string(keyJSON)
		if st.outlier == nil || st.outlierKey != key {
			st.outlier = newOutlierDetector(*c.OutlierDetection, dials)
			st.outlierKey = key
		} else {
			st.outlier.setHosts(dials)
		}
		lease.outlier = st.outlier
		lease.outlier.acquire()
	}
	return addedAt, lease
}

// release ends the lease; the last user of a state drops it.
func (l *stateLease) release() {
	if l == nil {
		return
	}
	if l.outlier != nil {
		l.outlier.release()
	}
	clusterStates.Lock()
	defer clusterStates.Unlock()
	st := clusterStates.byName[l.name]
	if st == nil {
		return
	}
	st.users--
	if st.users <= 0 {
		delete(clusterStates.byName, l.name)
	}
}
