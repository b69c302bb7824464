//go:build tools

// Package tools pins the module's dependencies before every package uses them.
package tools

import (
	_ "github.com/florianl/go-nfqueue/v2"
	_ "github.com/google/nftables"
	_ "github.com/mdlayher/netlink"
	_ "github.com/ti-mo/conntrack"
	_ "gopkg.in/yaml.v3"
)
