package daemon

import (
	"fmt"
	"net"
)

// ListenMetrics opens the metrics address before the daemon starts, so that
// an address it cannot listen on (in use, not local, no permission) stops
// the start instead of leaving a daemon without metrics.
func ListenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address %s: %w", addr, err)
	}
	return ln, nil
}
