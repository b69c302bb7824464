package engine

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/luafw/luafw/internal/sandbox"
	lua "github.com/luafw/luafw/lua"
)

// Plugin option schemas: fw.schema{name = {type =, default =, values =,
// min =, max =, doc =}, ...} declares a plugin's options and returns their
// values, checked and normalized, defaults filled in. A name the
// configuration gives that the schema lacks, a value of the wrong type and
// a value out of range are load errors naming the option and, when the
// options came from a configuration file, its file:line (PluginSpec.Config
// and OptionLines); else the line of the fw.schema call.

// OptionSpec is one option a plugin declares.
type OptionSpec struct {
	Name    string
	Type    string   // one of optionTypes
	Default string   // the default as Lua text ("" when none)
	Values  []string // the allowed values, when limited
	Min     *float64 // bounds of numbers (ports, integers), when given
	Max     *float64
	Doc     string
}

// optionType checks and normalizes one kind of option value.
type optionType struct {
	want string // what a value must be, for messages
	list bool   // a value or a list of them, normalized to a list
	// check returns the normalized value, or an error saying what is wrong.
	check func(L *lua.LState, v lua.LValue) (lua.LValue, error)
}

var optionTypes = map[string]optionType{
	"any":      {want: "any value", check: func(_ *lua.LState, v lua.LValue) (lua.LValue, error) { return v, nil }},
	"boolean":  {want: "true or false", check: checkKind(lua.LTBool)},
	"string":   {want: "a string", check: checkKind(lua.LTString)},
	"number":   {want: "a number", check: checkKind(lua.LTNumber)},
	"integer":  {want: "a whole number", check: checkInteger},
	"table":    {want: "a table", check: checkKind(lua.LTTable)},
	"port":     {want: "a port (0..65535)", check: checkPort},
	"ports":    {want: "a port (0..65535) or a list of them", list: true, check: checkPort},
	"strings":  {want: "a string or a list of strings", list: true, check: checkKind(lua.LTString)},
	"list":     {want: "a value or a list of them", list: true, check: func(_ *lua.LState, v lua.LValue) (lua.LValue, error) { return v, nil }},
	"cidrs":    {want: "an address or CIDR, or a list of them", list: true, check: checkCIDR},
	"hooks":    {want: "a hook name or a list of them", list: true, check: checkHook},
	"priority": {want: "a priority (a number or a name such as \"filter\")", check: checkPriority},
	"rate":     {want: "a rate (a number per second, or \"N/s\", \"N/min\", \"N/h\")", check: checkRate},
}

func optionTypeNames() []string {
	names := make([]string, 0, len(optionTypes))
	for n := range optionTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func checkKind(kind lua.LValueType) func(*lua.LState, lua.LValue) (lua.LValue, error) {
	return func(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
		if v.Type() != kind {
			return nil, errWrongType
		}
		return v, nil
	}
}

// errWrongType says the value is not of the option's type; the message
// is made by the caller, which knows the type.
var errWrongType = errors.New("wrong type")

func checkInteger(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	n, ok := v.(lua.LNumber)
	if !ok || float64(n) != math.Trunc(float64(n)) {
		return nil, errWrongType
	}
	return v, nil
}

func checkPort(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	n, ok := v.(lua.LNumber)
	if !ok {
		if s, isStr := v.(lua.LString); isStr {
			if p, err := strconv.ParseUint(string(s), 10, 16); err == nil {
				return lua.LNumber(p), nil
			}
		}
		return nil, errWrongType
	}
	if float64(n) != math.Trunc(float64(n)) || n < 0 || n > 65535 {
		return nil, errWrongType
	}
	return v, nil
}

func checkCIDR(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	s, ok := v.(lua.LString)
	if !ok {
		return nil, errWrongType
	}
	if _, err := netip.ParsePrefix(string(s)); err != nil {
		if _, err := netip.ParseAddr(string(s)); err != nil {
			return nil, errWrongType
		}
	}
	return v, nil
}

func checkHook(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	s, ok := v.(lua.LString)
	if !ok {
		return nil, errWrongType
	}
	if _, err := ParseHook(string(s)); err != nil {
		return nil, errWrongType
	}
	return v, nil
}

func checkPriority(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	if _, err := parsePriority(v); err != nil {
		return nil, errWrongType
	}
	return v, nil
}

// checkRate reads a number (per second) or "N/s", "N/min", "N/h" and
// returns tokens per second.
func checkRate(_ *lua.LState, v lua.LValue) (lua.LValue, error) {
	switch x := v.(type) {
	case lua.LNumber:
		if x < 0 {
			return nil, errWrongType
		}
		return x, nil
	case lua.LString:
		n, unit, ok := strings.Cut(strings.ReplaceAll(string(x), " ", ""), "/")
		f, err := strconv.ParseFloat(n, 64)
		per := map[string]float64{"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[unit]
		if !ok || err != nil || per == 0 || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, errWrongType
		}
		return lua.LNumber(f / per), nil
	}
	return nil, errWrongType
}

// fwSchema is fw.schema{name = {type =, default =, values =, min =, max =,
// doc =}, ...}: the plugin's options, checked.
func fwSchema(L *lua.LState) int {
	ps := stateOf(L)
	if !ps.loading {
		L.RaiseError("fw.schema can only be called while the plugin loads (at its top level)")
	}
	if ps.schema != nil {
		L.RaiseError("fw.schema is called once per plugin")
	}
	decl := L.CheckTable(1)
	specs, defaults := parseSchema(L, decl)
	ps.schema = specs
	if ps.w == nil {
		ps.p.schema = specs
	}
	known := make([]string, len(specs))
	for i, s := range specs {
		known[i] = s.Name
	}
	var bad error
	for _, name := range tableKeys(ps.options) {
		if bad == nil && !slices.Contains(known, name) {
			msg := fmt.Sprintf("option %s is unknown", sandbox.QuoteCut(name, MaxNameLen))
			if c := sandbox.Closest(name, known); c != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", c)
			}
			bad = ps.optionError(L, name, msg+"; its options: "+strings.Join(known, ", "))
		}
	}
	out := L.CreateTable(0, len(specs))
	for i, s := range specs {
		v := ps.options.RawGetString(s.Name)
		if v == lua.LNil {
			out.RawSetString(s.Name, defaults[i])
			continue
		}
		nv, err := checkOption(L, s, v)
		if err != nil && bad == nil {
			bad = ps.optionError(L, s.Name, fmt.Sprintf("option %s: %v", s.Name, err))
		}
		out.RawSetString(s.Name, nv)
	}
	if bad != nil {
		L.RaiseError("%v", bad)
	}
	// Reading a name the schema does not declare is an error, as for the
	// API's tables; a declared option without a value reads nil.
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__index", L.NewClosure(undeclaredOption, lua.LString(strings.Join(known, " "))))
	out.Metatable = mt
	L.Push(out)
	return 1
}

// undeclaredOption is the __index of fw.schema's result; its upvalue is
// the declared names, separated by spaces.
func undeclaredOption(L *lua.LState) int {
	key, ok := L.Get(2).(lua.LString)
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	known := strings.Fields(L.ToString(lua.UpvalueIndex(1)))
	if slices.Contains(known, string(key)) {
		L.Push(lua.LNil)
		return 1
	}
	L.RaiseError("%s", strings.Replace(sandbox.NoSuchField("options", string(key), known), "no such field in options", "not an option fw.schema declares", 1))
	return 0
}

// optionError records a bad option as a load error at its line in the
// configuration, when known; the raised error then says the same at the
// fw.schema call.
func (ps *pluginState) optionError(L *lua.LState, name, msg string) error {
	spec := ps.p.spec
	if line := spec.OptionLines[name]; spec.Config != "" && line > 0 && ps.optionErr == nil {
		ps.optionErr = &LoadError{Plugin: spec.Name, File: spec.Config, Line: line, Reason: "plugin " + spec.Name + ": " + msg}
	}
	return fmt.Errorf("%s", msg)
}

// parseSchema reads the declarations of fw.schema, sorted by name, with
// their defaults (normalized like values). A bad declaration is the
// plugin's mistake: an error at the call.
func parseSchema(L *lua.LState, decl *lua.LTable) ([]OptionSpec, []lua.LValue) {
	var specs []OptionSpec
	decls := map[string]*lua.LTable{}
	decl.ForEach(func(k, v lua.LValue) {
		name, ok := k.(lua.LString)
		if !ok || !isOptionName(string(name)) {
			L.RaiseError("fw.schema: option names are strings of letters, digits and _, not %s", sandbox.QuoteCut(k.String(), MaxNameLen))
		}
		t, ok := v.(*lua.LTable)
		if !ok {
			L.RaiseError("fw.schema: option %s: want a table {type =, default =, doc =}, not %s", name, v.Type())
		}
		decls[string(name)] = t
		specs = append(specs, OptionSpec{Name: string(name)})
	})
	slices.SortFunc(specs, func(a, b OptionSpec) int { return strings.Compare(a.Name, b.Name) })
	defaults := make([]lua.LValue, len(specs))
	for i := range specs {
		s := &specs[i]
		var dflt lua.LValue = lua.LNil
		var values *lua.LTable
		decls[s.Name].ForEach(func(k, v lua.LValue) {
			switch k.String() {
			case "type":
				s.Type = v.String()
			case "default":
				dflt = v
			case "doc":
				s.Doc = v.String()
			case "values":
				values, _ = v.(*lua.LTable)
			case "min", "max":
				n, ok := v.(lua.LNumber)
				if !ok {
					L.RaiseError("fw.schema: option %s: %s must be a number", s.Name, k)
				}
				f := float64(n)
				if k.String() == "min" {
					s.Min = &f
				} else {
					s.Max = &f
				}
			default:
				L.RaiseError("fw.schema: option %s: unknown field %s (want type, default, values, min, max, doc)", s.Name, sandbox.QuoteCut(k.String(), MaxNameLen))
			}
		})
		if _, ok := optionTypes[s.Type]; !ok {
			L.RaiseError("fw.schema: option %s: type must be one of %s, not %s", s.Name, strings.Join(optionTypeNames(), ", "), sandbox.QuoteCut(s.Type, MaxNameLen))
		}
		if values != nil {
			sandbox.Contents(values).ForEach(func(_, v lua.LValue) { s.Values = append(s.Values, v.String()) })
		}
		if dflt != lua.LNil {
			s.Default = luaText(dflt)
			d, err := checkOption(L, *s, dflt)
			if err != nil {
				L.RaiseError("fw.schema: option %s: the default: %v", s.Name, err)
			}
			dflt = d
		}
		defaults[i] = dflt
	}
	return specs, defaults
}

func isOptionName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// checkOption checks v against s and returns it normalized (a list for
// list types, tokens per second for a rate).
func checkOption(L *lua.LState, s OptionSpec, v lua.LValue) (lua.LValue, error) {
	typ := optionTypes[s.Type]
	if !typ.list {
		return checkOne(L, s, typ, v)
	}
	t, isTable := v.(*lua.LTable)
	if !isTable {
		one, err := checkOne(L, s, typ, v)
		if err != nil {
			return nil, err
		}
		list := L.CreateTable(1, 0)
		list.RawSetInt(1, one)
		return list, nil
	}
	t = sandbox.Contents(t)
	n := t.Len()
	list := L.CreateTable(n, 0)
	var err error
	t.ForEach(func(k, e lua.LValue) {
		i, ok := k.(lua.LNumber)
		if err != nil {
			return
		}
		if !ok || int(i) < 1 || int(i) > n {
			err = fmt.Errorf("want %s, not a table with key %s", typ.want, sandbox.QuoteCut(k.String(), MaxNameLen))
			return
		}
		var one lua.LValue
		if one, err = checkOne(L, s, typ, e); err == nil {
			list.RawSetInt(int(i), one)
		}
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

func checkOne(L *lua.LState, s OptionSpec, typ optionType, v lua.LValue) (lua.LValue, error) {
	nv, err := typ.check(L, v)
	if err != nil {
		what := v.Type().String()
		if v.Type() == lua.LTString || v.Type() == lua.LTNumber {
			what = luaText(v)
		}
		return nil, fmt.Errorf("want %s, not %s", typ.want, what)
	}
	if len(s.Values) > 0 && !slices.Contains(s.Values, v.String()) {
		return nil, fmt.Errorf("%s is not one of %s", luaText(v), strings.Join(s.Values, ", "))
	}
	if n, ok := nv.(lua.LNumber); ok {
		if s.Min != nil && float64(n) < *s.Min || s.Max != nil && float64(n) > *s.Max {
			return nil, fmt.Errorf("%v is out of range (%s)", float64(n), rangeText(s))
		}
	}
	return nv, nil
}

// Range is the option's bounds as text ("4..128", "at least 0"), or ""
// when it has none.
func (s OptionSpec) Range() string {
	if s.Min == nil && s.Max == nil {
		return ""
	}
	return rangeText(s)
}

func rangeText(s OptionSpec) string {
	switch {
	case s.Min != nil && s.Max != nil:
		return fmt.Sprintf("%v..%v", *s.Min, *s.Max)
	case s.Min != nil:
		return fmt.Sprintf("at least %v", *s.Min)
	}
	return fmt.Sprintf("at most %v", *s.Max)
}

// luaText is v as Lua source text, for messages and defaults: strings
// quoted, tables in braces, at most 16 entries each and 3 levels deep (a
// script's table may be huge or contain itself).
func luaText(v lua.LValue) string { return luaTextDepth(v, 3) }

func luaTextDepth(v lua.LValue, depth int) string {
	switch x := v.(type) {
	case lua.LString:
		return sandbox.QuoteCut(string(x), 64)
	case *lua.LTable:
		if depth == 0 {
			return "{...}"
		}
		var parts []string
		x = sandbox.Contents(x)
		if n := x.Len(); n > 0 {
			for i := 1; i <= n && i <= 16; i++ {
				parts = append(parts, luaTextDepth(x.RawGetInt(i), depth-1))
			}
			return "{" + strings.Join(parts, ", ") + "}"
		}
		x.ForEach(func(k, e lua.LValue) {
			if len(parts) < 16 {
				parts = append(parts, sandbox.Cut(k.String(), 64)+" = "+luaTextDepth(e, depth-1))
			}
		})
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return v.String()
}

// PluginOptions returns the options the loaded plugin name declares with
// fw.schema, and whether it declares any.
func (e *Engine) PluginOptions(name string) ([]OptionSpec, bool) {
	for _, p := range e.gen.Load().plugins {
		if p.name() == name {
			return slices.Clone(p.schema), p.schema != nil
		}
	}
	return nil, false
}
