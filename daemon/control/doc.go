// Package control is luafw's control protocol: how `luafw reload`,
// `luafw status` (and later `luafw trace`, `state`, `top`) talk to a running
// daemon.
//
// The transport is a Unix stream socket that only root (or the daemon's own
// user) may use: the socket is created 0600 in a directory created 0700, and
// the server checks every peer's credentials (SO_PEERCRED) as well. A
// connection carries one request and its answer, each a JSON object on one
// line:
//
//	-> {"cmd":"reload","args":{...}}
//	<- {"more":true,"result":{...}}     zero or more streamed items
//	<- {"result":{...}}                 the final answer, or
//	<- {"error":"p.lua:3: ..."}
//
// A handler that streams (a packet trace) sends items with more=true until
// it returns or the client hangs up; a plain command sends only the final
// answer. Requests are limited to MaxRequest bytes.
//
// The package knows nothing of the daemon: the daemon registers its commands
// with Server.Handle. Costs: one goroutine per open connection; nothing on
// the packet path.
package control
