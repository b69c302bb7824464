package daemon

import "github.com/luafw/luafw/config"

// CheckQueues refuses a plan whose queue numbers would run past 65535 with
// cfg's queue settings, naming the configuration's queue line: each
// segment takes a block of queues (see allocBlock).
func CheckQueues(cfg *config.File, plan []Segment) error {
	return cfg.CheckQueueRange(max(1, len(plan)))
}
