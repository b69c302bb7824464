package engine

import (
	"fmt"
	"strings"

	lua "github.com/luafw/luafw/lua"
)

// domainSet matches DNS names against a list of domains: a name matches an
// entry when it is the entry or a subdomain of it. Entries are stored
// normalized (lowercase, no leading "*." or ".", no trailing dot); each may
// carry a value (a mark, a class).
type domainSet map[string]domainEntry

type domainEntry struct {
	name  lua.LValue // the normalized entry, pre-boxed for Lua
	value lua.LValue
}

// normalizeDomain lowercases a name and strips a leading "*." or "." and a
// trailing dot.
func normalizeDomain(s string) string {
	s = strings.ToLower(s)
	s = strings.TrimPrefix(s, "*.")
	s = strings.TrimPrefix(s, ".")
	return strings.TrimSuffix(s, ".")
}

// match returns the entry name is, or is a subdomain of (the longest such
// entry), trying the name and then each parent in turn. It allocates only
// when name has upper case letters or a trailing dot.
func (d domainSet) match(name string) (domainEntry, bool) {
	if strings.HasSuffix(name, ".") || strings.ToLower(name) != name {
		name = normalizeDomain(name)
	}
	for {
		if e, ok := d[name]; ok {
			return e, true
		}
		dot := strings.IndexByte(name, '.')
		if dot < 0 {
			return domainEntry{}, false
		}
		name = name[dot+1:]
	}
}

// newDomainSet builds a set from a Lua list of names (each its own value)
// or a table of name = value.
func newDomainSet(t *lua.LTable) (domainSet, error) {
	d := domainSet{}
	var err error
	add := func(name, value lua.LValue, where string) {
		s, ok := name.(lua.LString)
		if !ok {
			err = fmt.Errorf("%s: %s is not a name", where, name.String())
			return
		}
		n := normalizeDomain(string(s))
		if n == "" {
			err = fmt.Errorf("%s: empty name", where)
			return
		}
		if value == nil {
			value = lua.LString(n)
		}
		d[n] = domainEntry{name: lua.LString(n), value: value}
	}
	n := t.Len()
	for i := 1; i <= n && err == nil; i++ {
		add(t.RawGetInt(i), nil, fmt.Sprintf("entry %d", i))
	}
	t.ForEach(func(k, v lua.LValue) {
		if _, isIndex := k.(lua.LNumber); isIndex || err != nil {
			return
		}
		add(k, v, fmt.Sprintf("entry %s", k.String()))
	})
	return d, err
}

const domainsType = "luafw.domains"

var domainsMethods = map[string]lua.LGFunction{
	"match": domainsMatch,
	"size":  domainsSize,
}

// netDomains is net.domains(list or map [, what]): what names the list in
// errors (e.g. "myplugin: option names"). Only while the plugin loads.
func netDomains(L *lua.LState) int {
	loadTimeOnly(L, "net.domains")
	d, err := newDomainSet(L.CheckTable(1))
	if err != nil {
		L.RaiseError("%s: %v", L.OptString(2, "net.domains"), err)
	}
	return pushUD(L, d, domainsType)
}

// domainsMatch is set:match(name) -> entry, value (nil when nothing
// matches).
func domainsMatch(L *lua.LState) int {
	e, found := checkUD[domainSet](L, "domain set").match(L.CheckString(2))
	if !found {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(e.name)
	L.Push(e.value)
	return 2
}

func domainsSize(L *lua.LState) int {
	L.Push(lua.LNumber(len(checkUD[domainSet](L, "domain set"))))
	return 1
}
