package netfilter

import "math"

// Netfilter's fixed stage priorities. A callback runs after every stage whose
// priority is lower or equal, and before every stage above it.
const (
	PriorityFirst     = math.MinInt32
	PriorityDefrag    = -400
	PriorityRaw       = -300
	PriorityConntrack = -200
	PriorityMangle    = -150
	PriorityDstNAT    = -100
	PriorityFilter    = 0
	PrioritySecurity  = 50
	PrioritySrcNAT    = 100
	PriorityLast      = math.MaxInt32
)

// PriorityNames returns the names scripts use (fw.priority.NAME) and their
// values.
func PriorityNames() map[string]int {
	return map[string]int{
		"raw": PriorityRaw, "conntrack": PriorityConntrack, "mangle": PriorityMangle,
		"dstnat": PriorityDstNAT, "filter": PriorityFilter, "security": PrioritySecurity,
		"srcnat": PrioritySrcNAT,
	}
}
