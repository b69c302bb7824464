module github.com/luafw/luafw

go 1.26

require (
	github.com/coreos/go-systemd/v22 v22.5.0
	github.com/florianl/go-nfqueue/v2 v2.1.0
	github.com/google/nftables v0.3.0
	github.com/mdlayher/netlink v1.9.0
	github.com/ti-mo/conntrack v0.5.2
	github.com/yuin/gopher-lua v1.1.1
	golang.org/x/sys v0.41.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/mdlayher/socket v0.5.1 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/ti-mo/netfilter v0.5.3 // indirect
	golang.org/x/net v0.50.0 // indirect
	golang.org/x/sync v0.19.0 // indirect
)
