package engine

import (
	"strings"
	"testing"
)

const schemaPlugin = `local O = fw.schema{
  ports = {type = "ports", default = {22}, doc = "destination ports"},
  rate = {type = "rate", default = "3/min"},
  proto = {type = "string", default = "tcp", values = {"tcp", "udp", "any"}},
  prefix = {type = "integer", default = 64, min = 4, max = 128},
  allow = {type = "cidrs"},
  hooks = {type = "hooks", default = "input"},
}
fw.register{hook = O.hooks, fn = function(pkt)
  if O.ports[1] == pkt.dport and O.proto == "tcp" and O.rate > 0 and O.prefix == 64 then return fw.DROP end
end}`

func TestSchemaDefaultsAndNormalizing(t *testing.T) {
	e, _ := newTestEngine(t)
	spec := src("rl", schemaPlugin)
	spec.Options = map[string]any{"ports": 2222, "rate": "2/s", "allow": "192.0.2.0/24"}
	mustLoad(t, e, spec)
	if d := e.Process(&Packet{Hook: Input, Data: tcpPkt(t, "10.0.0.1", "10.0.0.2", 1, 2222, 0)}); d.Verdict != Drop {
		t.Fatalf("verdict %v errors %d: options not normalized", d.Verdict, d.Errors)
	}
	opts, ok := e.PluginOptions("rl")
	if !ok || len(opts) != 6 || opts[2].Name != "ports" || opts[2].Default != "{22}" || opts[2].Doc != "destination ports" {
		t.Fatalf("PluginOptions: %+v", opts)
	}
}

// A bad option is a load error naming the option, at its line in the
// configuration when the spec says where that is.
func TestSchemaRefusesBadOptions(t *testing.T) {
	for _, c := range []struct {
		opts map[string]any
		want string
	}{
		{map[string]any{"port": []any{2222}}, `luafw.yaml:7: plugin rl: option "port" is unknown (did you mean ports?); its options: allow, hooks, ports, prefix, proto, rate`},
		{map[string]any{"rat": "5/min"}, `luafw.yaml:7: plugin rl: option "rat" is unknown (did you mean rate?)`},
		{map[string]any{"ports": []any{"abc"}}, `luafw.yaml:7: plugin rl: option ports: want a port (0..65535) or a list of them, not "abc"`},
		{map[string]any{"rate": "fast"}, `luafw.yaml:7: plugin rl: option rate: want a rate`},
		{map[string]any{"proto": "icmp"}, `luafw.yaml:7: plugin rl: option proto: "icmp" is not one of tcp, udp, any`},
		{map[string]any{"prefix": 200}, `luafw.yaml:7: plugin rl: option prefix: 200 is out of range (4..128)`},
		{map[string]any{"allow": []any{"10.0.0.0/33"}}, `luafw.yaml:7: plugin rl: option allow: want an address or CIDR, or a list of them, not "10.0.0.0/33"`},
		{map[string]any{"hooks": "inptu"}, `luafw.yaml:7: plugin rl: option hooks: want a hook name or a list of them, not "inptu"`},
	} {
		e, _ := newTestEngine(t)
		spec := src("rl", schemaPlugin)
		spec.Options = c.opts
		spec.Config = "luafw.yaml"
		spec.OptionLines = map[string]int{}
		for k := range c.opts {
			spec.OptionLines[k] = 7
		}
		err := e.Load([]PluginSpec{spec})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %s", c.opts, err, c.want)
		}
		// Without a configuration: the line of the fw.schema call.
		spec.Config, spec.OptionLines = "", nil
		if err := e.Load([]PluginSpec{spec}); err == nil || !strings.HasPrefix(err.Error(), "rl.lua:1: option ") {
			t.Errorf("%v without a config: %v", c.opts, err)
		}
	}
	// Catching the error does not let the plugin load.
	e, _ := newTestEngine(t)
	spec := src("catch", `pcall(fw.schema, {a = {type = "number"}}) fw.register{hook = "input", fn = function() end}`)
	spec.Options, spec.Config, spec.OptionLines = map[string]any{"b": 1}, "c.yaml", map[string]int{"b": 3}
	if err := e.Load([]PluginSpec{spec}); err == nil || !strings.HasPrefix(err.Error(), `c.yaml:3: plugin catch: option "b" is unknown`) {
		t.Fatalf("caught option error: %v", err)
	}
}

// Reading an option the schema does not declare is an error; a declared
// one without a value is nil.
func TestSchemaResultIsStrict(t *testing.T) {
	e, _ := newTestEngine(t)
	err := e.Load([]PluginSpec{src("x", "local O = fw.schema{ports = {type = 'ports'}, rate = {type = 'rate'}}\nassert(O.ports == nil)\nlocal p = O.prots")})
	if err == nil || err.Error() != "x.lua:3: options.prots: not an option fw.schema declares (did you mean options.ports?)" {
		t.Fatalf("got %v", err)
	}
}

func TestSchemaDeclarationErrors(t *testing.T) {
	for code, want := range map[string]string{
		`fw.schema{a = {type = "nombre"}}`:                         "x.lua:1: fw.schema: option a: type must be one of",
		`fw.schema{a = {type = "number", default = "x"}}`:          `x.lua:1: fw.schema: option a: the default: want a number, not "x"`,
		`fw.schema{a = {type = "number", dflt = 1}}`:               `x.lua:1: fw.schema: option a: unknown field "dflt"`,
		`fw.schema{a = {type = "number"}} fw.schema{}`:             "x.lua:1: fw.schema is called once per plugin",
		`fw.register{hook="input", fn=function() fw.schema{} end}`: "", // raised in a callback, not at load
		// A default that contains itself is shown, not walked for ever.
		`local t = {} t[1] = t fw.schema{a = {type = "table", default = t}} fw.register{hook="input", fn=function() end}`: "",
	} {
		e, _ := newTestEngine(t)
		err := e.Load([]PluginSpec{src("x", code)})
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", code, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want %s", code, err, want)
		}
	}
}
