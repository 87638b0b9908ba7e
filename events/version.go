package events

import "fmt"

// Ver is a version number of the API (oc_ver_t).
type Ver struct {
	Major, Minor uint16
}

func (v Ver) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Version returns the version of the OCF Cluster Event Notification API this
// package implements: 0.1, the draft of seed §1.3 (oc_ev_get_version).
// Everything corral adds is additive, so a 0.1 client works unchanged.
func Version() Ver { return Ver{Major: 0, Minor: 1} }

// Revision numbers corral's own additions on top of Version (see doc.go,
// "Beyond the seed"). It grows by one whenever an addition is made, so a
// client can test for a feature without guessing from the 0.1 number.
//
//	1: Seq numbers, EVICTED, the named connectivity and group events,
//	   typed event data, the channel activation style, Service.Close.
const Revision = 1
