package engine

import (
	"slices"
	"strings"

	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
)

// The script API's names, in one place. The strict tables (strict.go),
// `luafw check`'s static checks (lint.go), the editor definitions and the
// luacheck standard (dist/editor, apidefs.go) all read this list; tests
// hold it equal to the module tables the engine really builds, to the
// names the packet views answer, and to docs/lua-api.md.
//
// Adding a name to the API is one line here (next to the code that
// implements it): {"fw", "every", "fun(seconds: number, fn: function)",
// "run fn every seconds"}.

// APIName is one name of the script API.
type APIName struct {
	// Table is where the name lives: a global module ("fw", "net"), a
	// table inside one ("fw.priority"), a packet view ("pkt", "pkt.tcp",
	// "pkt.ct"), or a type whose values have methods ("netset",
	// "state.map", ...; see apiTypes).
	Table string
	Name  string
	// Type is the value's type in lua-language-server's notation:
	// "integer", "string?", "fun(name: string): boolean". A method's
	// function type leaves out self.
	Type string
	// Doc is one line about the name.
	Doc string
}

// Method reports whether n is called with ':' (a method of a packet view
// or a typed value).
func (n APIName) Method() bool {
	return strings.HasPrefix(n.Type, "fun(") && (isView(n.Table) || apiTypes[n.Table] != "")
}

func isView(table string) bool { return table == "pkt" || strings.HasPrefix(table, "pkt.") }

// apiModuleNames are the globals the engine sets in every plugin state,
// besides print and the sandboxed standard library.
var apiModuleNames = []string{"fw", "net", "state", "log", "time", "bit", "packet", "dns", "tls", "stream"}

// apiTypes maps the tables of typed values (their methods) to the
// metatable names the engine registers them under.
var apiTypes = map[string]string{
	"netset":        netsetType,
	"domainset":     domainsType,
	"state.map":     stateMapType,
	"state.counter": stateCounterType,
	"state.bucket":  stateBucketType,
	"timer":         timerHandleType,
}

// apiClasses are the class names the editor definitions give each table
// (the names APIName.Type refers to).
var apiClasses = map[string]string{
	"fw": "luafw.fw", "fw.priority": "luafw.Priorities", "net": "luafw.net", "state": "luafw.state",
	"log": "luafw.log", "time": "luafw.time", "bit": "luafw.bit", "packet": "luafw.packet",
	"dns": "luafw.dns", "tls": "luafw.tls", "stream": "luafw.stream", "pkt": "luafw.Packet", "pkt.tcp": "luafw.PacketTCP",
	"pkt.ct": "luafw.PacketCT", "netset": "luafw.NetSet", "domainset": "luafw.DomainSet",
	"state.map": "luafw.StateMap", "state.counter": "luafw.StateCounter", "state.bucket": "luafw.StateBucket",
	"timer": "luafw.Timer",
}

// APITables returns the tables of the API in the order of APINames, each
// with the class name editor definitions give it, and whether it is a
// global module.
func APITables() []APITable {
	var out []APITable
	seen := map[string]bool{}
	for _, n := range apiNames {
		if !seen[n.Table] {
			seen[n.Table] = true
			out = append(out, APITable{Name: n.Table, Class: apiClasses[n.Table], Global: slices.Contains(apiModuleNames, n.Table)})
		}
	}
	return out
}

// APITable is one table of the script API.
type APITable struct {
	Name   string // "fw", "pkt.tcp", "state.map"
	Class  string // "luafw.fw", "luafw.PacketTCP"
	Global bool   // a module set as a global
}

// apiTypeTable is the API table name of the userdata type typ.
func apiTypeTable(typ string) string {
	for table, t := range apiTypes {
		if t == typ {
			return table
		}
	}
	return typ
}

var apiNames = []APIName{
	{"fw", "ACCEPT", "integer", "verdict: pass the packet on to the next callback"},
	{"fw", "DROP", "integer", "verdict, final: discard the packet"},
	{"fw", "STOP", "integer", "verdict, final accept: skip the remaining callbacks of this hook"},
	{"fw", "REJECT", "integer", "verdict, final: drop and answer with a TCP reset or ICMP unreachable"},
	{"fw", "REPEAT", "integer", "verdict: run the hook again"},
	{"fw", "register", "fun(spec: luafw.Registration)", "register a callback (top level only)"},
	{"fw", "schema", "fun(decl: table<string, luafw.OptionDecl>): table<string, any>", "declare the plugin's options; returns their values, checked, defaults filled in"},
	{"fw", "option", "fun(name: string, default?: any, types?: string): any", "an option's value, or default when unset; types makes another type a load error"},
	{"fw", "list", "fun(v: any): table", "v when a table, else a list of v ({} for nil)"},
	{"fw", "keys", "fun(t: table): any[]", "t's keys as a sorted list (top level only)"},
	{"fw", "send", "fun(bytes: string, opts?: {mark?: integer}): boolean, string?", "send a complete IP packet (inside a callback)"},
	{"fw", "every", "fun(seconds: number, fn: fun()): luafw.Timer", "run fn every seconds (top level or a timer; once per plugin)"},
	{"fw", "after", "fun(seconds: number, fn: fun()): luafw.Timer", "run fn once after seconds (top level or a timer)"},
	{"fw", "options", "table<string, any>", "the plugin's options from the configuration"},
	{"fw", "plugin", "string", "the plugin's name"},
	{"fw", "priority", "luafw.Priorities", "priority names and their numbers"},
	{"fw", "hooks", "string[]", "the hook names"},

	{"fw.priority", "raw", "integer", "-300: after defragmentation and the raw table"},
	{"fw.priority", "conntrack", "integer", "-200: right after conntrack"},
	{"fw.priority", "mangle", "integer", "-150: after the mangle table"},
	{"fw.priority", "dstnat", "integer", "-100: after destination NAT"},
	{"fw.priority", "filter", "integer", "0: with the filter table (the default)"},
	{"fw.priority", "security", "integer", "50: after the filter table"},
	{"fw.priority", "srcnat", "integer", "100: after source NAT"},

	{"net", "cidr", "fun(text: string): luafw.NetSet", "a set of one address or prefix"},
	{"net", "set", "fun(list: string[]): luafw.NetSet", "a set of addresses and prefixes (top level only)"},
	{"net", "load", "fun(path: string): luafw.NetSet", "a set read from a list file (top level only)"},
	{"net", "ip", "fun(text: string): string?", "the address in canonical form, or nil"},
	{"net", "domains", "fun(names: table, what?: string): luafw.DomainSet", "a set of domain names and their subdomains (top level only)"},
	{"netset", "contains", "fun(addr: string): boolean", "whether the address is in the set"},
	{"netset", "size", "fun(): integer", "the number of entries the set was built from"},
	{"domainset", "match", "fun(name: string): string?, any", "the entry the name matches and its value, or nil"},
	{"domainset", "size", "fun(): integer", "the number of names"},

	{"state", "map", "fun(name: string, opts?: {scope?: string, kernel?: string}): luafw.StateMap", "a shared map with expiring keys; kernel = \"drop\" mirrors its address keys to a kernel drop set"},
	{"state", "counter", "fun(name: string, opts?: {scope?: string}): luafw.StateCounter", "a shared counter"},
	{"state", "bucket", "fun(name: string, opts: {rate: number, burst: number, scope?: string}): luafw.StateBucket", "shared token buckets by key"},
	{"state.map", "get", "fun(key: string|number): any", "the value, or nil when absent or expired"},
	{"state.map", "set", "fun(key: string|number, value: any, ttl?: number): boolean, string?", "store a value (nil deletes), expiring after ttl seconds"},
	{"state.map", "incr", "fun(key: string|number, delta?: number, ttl?: number, init?: number): number", "add delta (default 1) to a number"},
	{"state.map", "delete", "fun(key: string|number)", "remove the key"},
	{"state.map", "len", "fun(): integer", "the number of keys"},
	{"state.counter", "get", "fun(): number", "the counter's value"},
	{"state.counter", "incr", "fun(delta?: number): number", "add delta (default 1)"},
	{"timer", "cancel", "fun()", "stop the timer"},
	{"state.bucket", "take", "fun(key: string|number, n?: number): boolean", "take n (default 1) tokens from key's bucket"},

	{"log", "debug", "fun(msg: string, fields?: table)", "a debug line"},
	{"log", "info", "fun(msg: string, fields?: table)", "an info line"},
	{"log", "warn", "fun(msg: string, fields?: table)", "a warning line"},
	{"log", "error", "fun(msg: string, fields?: table)", "an error line"},
	{"time", "now", "fun(): number", "seconds since the epoch, with fraction, from the engine clock"},

	{"bit", "band", "fun(a: integer, ...: integer): integer", "bitwise and"},
	{"bit", "bor", "fun(a: integer, ...: integer): integer", "bitwise or"},
	{"bit", "bxor", "fun(a: integer, ...: integer): integer", "bitwise xor"},
	{"bit", "bnot", "fun(a: integer): integer", "bitwise complement"},
	{"bit", "lshift", "fun(a: integer, n: integer): integer", "shift left by n (0..31) bits"},
	{"bit", "rshift", "fun(a: integer, n: integer): integer", "shift right by n (0..31) bits"},
	{"bit", "btest", "fun(a: integer, b: integer): boolean", "whether a and b share a bit"},
	{"bit", "tohex", "fun(a: integer): string", "\"0x%08x\" text"},

	{"packet", "tcp", "fun(fields: table): string", "the bytes of a TCP packet (src, dst, sport, dport, flags, seq, ack, ttl, payload)"},
	{"packet", "udp", "fun(fields: table): string", "the bytes of a UDP packet (src, dst, sport, dport, ttl, payload)"},
	{"packet", "icmp", "fun(fields: table): string", "the bytes of an ICMP packet (src, dst, type, code, id, seq, ttl, payload)"},
	{"packet", "icmpv6", "fun(fields: table): string", "the bytes of an ICMPv6 packet (src, dst, type, code, id, seq, ttl, payload)"},
	{"dns", "parse", "fun(payload: string): table?, string?", "a DNS message's header and question, or nil and a reason"},
	{"dns", "answer", "fun(query: string, opts?: {a?: string, aaaa?: string, ttl?: integer, nxdomain?: boolean}): string?, string?", "the answer a sinkhole gives to a DNS query"},
	{"tls", "sni", "fun(payload: string): string?, string?", "the server name of a ClientHello, or nil and a reason"},
	{"tls", "parse", "fun(payload: string): table?, string?", "a ClientHello's sni, alpn, version, legacy_version, truncated"},
	{"stream", "tls_hello", "fun(pkt: luafw.Packet): table?, string?", "the flow's ClientHello (TCP reassembled by sequence number, or QUIC Initials) once complete; nil and \"more\" before"},
	{"stream", "dns", "fun(pkt: luafw.Packet): table?, string?", "the DNS messages a TCP flow's client completed with this packet"},
	{"stream", "limits", "fun(limits: {bytes?: integer, seconds?: number, flows?: integer, memory?: integer, readings?: integer})", "bounds of the plugin's reassembly (top level only)"},
	{"stream", "stats", "fun(): table", "the plugin's reassembly counters in this worker"},

	{"pkt", "hook", "string", "the hook running"},
	{"pkt", "family", "integer", "4 or 6; 0 when not a decodable IP header"},
	{"pkt", "src", "string?", "source address"},
	{"pkt", "dst", "string?", "destination address"},
	{"pkt", "proto", "string|integer", "\"tcp\", \"udp\", \"icmp\", \"icmpv6\", else the protocol number"},
	{"pkt", "sport", "integer", "source port; 0 without ports"},
	{"pkt", "dport", "integer", "destination port; 0 without ports"},
	{"pkt", "len", "integer", "the IP packet's length in bytes"},
	{"pkt", "ttl", "integer", "TTL or hop limit"},
	{"pkt", "icmp_type", "integer", "ICMP or ICMPv6 type; 0 otherwise"},
	{"pkt", "icmp_code", "integer", "ICMP or ICMPv6 code; 0 otherwise"},
	{"pkt", "fragment", "boolean", "the packet is a fragment"},
	{"pkt", "payload", "string", "the bytes after the transport header"},
	{"pkt", "tcp", "luafw.PacketTCP", "the TCP flags"},
	{"pkt", "ct", "luafw.PacketCT", "connection tracking"},
	{"pkt", "indev", "string?", "input interface"},
	{"pkt", "outdev", "string?", "output interface"},
	{"pkt", "mark", "integer", "the packet mark, as earlier callbacks left it"},
	{"pkt", "cgroup", "string?", "the cgroup v2 path of a local socket (output, postrouting); nil when not known"},
	{"pkt", "flow", "table", "the plugin's table for this flow (both directions), made on first read"},
	{"pkt", "uid", "integer?", "owner of a locally generated packet"},
	{"pkt", "gid", "integer?", "group of a locally generated packet"},
	{"pkt", "dscp", "integer", "the DSCP bits, 0..63"},
	{"pkt", "ecn", "integer", "the ECN bits, 0..3"},
	{"pkt", "rewritten", "boolean", "whether a callback has rewritten this packet"},
	{"pkt", "set_mark", "fun(value: integer, mask?: integer)", "set the bits of mask in the packet mark"},
	{"pkt", "tag", "fun(name: string)", "put a tag on the packet"},
	{"pkt", "untag", "fun(name: string)", "remove a tag"},
	{"pkt", "tagged", "fun(name: string): boolean", "whether the packet carries the tag"},
	{"pkt", "bytes", "fun(offset?: integer, n?: integer): string?", "raw bytes of the IP packet"},
	{"pkt", "capture", "fun()", "write the packet to the capture file"},
	{"pkt", "set_payload", "fun(bytes: string): boolean, string?", "replace the transport payload"},
	{"pkt", "write", "fun(offset: integer, bytes: string): boolean, string?", "overwrite raw bytes of the IP packet"},
	{"pkt", "set_ttl", "fun(n: integer): boolean, string?", "set the TTL or hop limit"},
	{"pkt", "set_dscp", "fun(n: integer): boolean, string?", "set the DSCP bits"},
	{"pkt", "set_ecn", "fun(n: integer): boolean, string?", "set the ECN bits"},
	{"pkt", "clamp_mss", "fun(n: integer): boolean, string?", "lower a SYN's MSS option to n"},
	{"pkt", "reply_reset", "fun(): boolean, string?", "TCP resets to both ends of the connection"},
	{"pkt", "reply_icmp", "fun(type: integer, code: integer): boolean, string?", "an ICMP error to the sender"},
	{"pkt", "reply_udp", "fun(payload: string): boolean, string?", "a UDP datagram back to the sender"},

	{"pkt.tcp", "flags", "integer", "the TCP flags as a number"},
	{"pkt.tcp", "fin", "boolean", "FIN is set"},
	{"pkt.tcp", "syn", "boolean", "SYN is set"},
	{"pkt.tcp", "rst", "boolean", "RST is set"},
	{"pkt.tcp", "psh", "boolean", "PSH is set"},
	{"pkt.tcp", "ack", "boolean", "ACK is set"},
	{"pkt.tcp", "urg", "boolean", "URG is set"},
	{"pkt.tcp", "ece", "boolean", "ECE is set"},
	{"pkt.tcp", "cwr", "boolean", "CWR is set"},

	{"pkt.ct", "state", "string?", "\"new\", \"established\", \"related\", \"invalid\", \"untracked\"; nil when not known"},
	{"pkt.ct", "mark", "integer?", "the connection's mark; nil when not known"},
	{"pkt.ct", "set_mark", "fun(value: integer, mask?: integer)", "set the bits of mask in the connection's mark"},
	{"pkt.ct", "set_timeout", "fun(seconds: integer)", "set the connection's timeout"},
	{"pkt.ct", "set_label", "fun(bit: integer)", "set conntrack label bit 0..127"},
}

// APINames returns the script API's names, in the order they are
// documented.
func APINames() []APIName { return slices.Clone(apiNames) }

// apiIx indexes apiNames; it is never changed.
var apiIx = newAPIIndex()

// noSuchField is the error for a read of key from table (a packet view),
// with the closest name the table has.
func noSuchField(table, key string) string {
	return sandbox.NoSuchField(table, key, apiIx.names(table))
}

// apiIndex is the names of each table, for lookups.
type apiIndex map[string]map[string]APIName

func newAPIIndex() apiIndex {
	ix := apiIndex{}
	for _, n := range apiNames {
		if ix[n.Table] == nil {
			ix[n.Table] = map[string]APIName{}
		}
		ix[n.Table][n.Name] = n
	}
	return ix
}

// names is the sorted names of table.
func (ix apiIndex) names(table string) []string {
	out := make([]string, 0, len(ix[table]))
	for n := range ix[table] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// tableKeys is the sorted string keys of t (of a read-only proxy's
// backing table).
func tableKeys(t *lua.LTable) []string {
	var ks []string
	sandbox.Contents(t).ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			ks = append(ks, string(s))
		}
	})
	slices.Sort(ks)
	return ks
}
