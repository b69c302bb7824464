package config

// FailClosed reports whether fail is "closed": luafw's queue rules then
// carry no bypass, so while no luafw process reads a queue (crashed, killed,
// hung before binding) the kernel drops what the rules divert to it.
// Default (fail: open): such packets pass unfiltered.
func (f *File) FailClosed() bool { return f.Fail == "closed" }

// QueueFailOpen reports whether a full kernel queue accepts the packets it
// cannot hold (NFQA_CFG_F_FAIL_OPEN) instead of dropping them. It follows
// fail unless queue.fail_open says otherwise: the two are separate kernel
// knobs, and e.g. a benchmark may want overflow counted as loss while a
// crashed daemon still lets traffic through.
func (f *File) QueueFailOpen() bool {
	if f.Queue.FailOpen != nil {
		return *f.Queue.FailOpen
	}
	return !f.FailClosed()
}
