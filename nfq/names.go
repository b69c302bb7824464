package nfq

import "slices"

// CheckTableName refuses a name nftables would refuse for our tables (""
// stands for DefaultTable), so a configuration can be checked before any
// rule is installed.
func CheckTableName(name string) error { return ruleCheckTable(ruleTableName(name)) }

// HasPorts reports whether IP protocol p has transport ports a Filter's
// DPorts and SPorts can match.
func HasPorts(p uint8) bool { return slices.Contains(rulePortProtos, p) }
