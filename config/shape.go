package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// shape walks the YAML tree against the Go type the decoder fills, before
// the decoder runs, and refuses in the configuration's own words (key
// paths like queue.balance, never Go type names) what the decoder would
// refuse or silently take: unknown keys, a list where a value belongs, a
// value out of its type's range, an empty plugin entry. It records the line
// of every key it meets, which later checks name in their errors.
type shape struct {
	f     *File
	lines map[string]int // key path (plugins[0].budget) -> line
}

var (
	durationType = reflect.TypeFor[Duration]()
	hexType      = reflect.TypeFor[Hex]()
	anyType      = reflect.TypeFor[any]()
	parserType   = reflect.TypeFor[scalarParser]()
)

// scalarParser is a value type written as one string with its own syntax
// (Size, Rate); shape refuses what it cannot parse.
type scalarParser interface{ parseScalar(string) error }

// walk checks node n, found at path, against type t.
func (s *shape) walk(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	s.lines[path] = n.Line
	if isNull(n) {
		if strings.HasSuffix(path, "]") && t.Kind() == reflect.Struct {
			return s.f.errorf(n.Line, "%s is empty (a lone '-'); remove it or give it keys", entryName(path))
		}
		return nil // an unset value: the default applies
	}
	switch {
	case t == durationType:
		return s.duration(n, path)
	case t == hexType:
		return s.hex(n, path)
	case t == anyType:
		return nil // free-form (plugin options): the plugin checks it
	case reflect.PointerTo(t).Implements(parserType):
		if n.Kind != yaml.ScalarNode {
			return s.f.errorf(n.Line, "%s: want a single value, not %s", path, kindName(n))
		}
		if err := reflect.New(t).Interface().(scalarParser).parseScalar(n.Value); err != nil {
			return s.f.errorf(n.Line, "%s: %v", path, err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.walk(n, t.Elem(), path)
	case reflect.Struct:
		return s.mapping(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return s.f.errorf(n.Line, "%s: want a list ([a, b] or lines starting with '-'), not %s", path, kindName(n))
		}
		for i, item := range n.Content {
			if err := s.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return s.f.errorf(n.Line, "%s: want keys and values, not %s", path, kindName(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if err := s.walk(n.Content[i+1], t.Elem(), join(path, k.Value)); err != nil {
				return err
			}
			s.lines[join(path, k.Value)] = k.Line
		}
		return nil
	}
	return s.scalar(n, t, path)
}

// mapping checks a mapping against a struct's yaml keys.
func (s *shape) mapping(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.MappingNode {
		return s.f.errorf(n.Line, "%s: want keys and values (key: value), not %s", where(path), kindName(n))
	}
	fields := map[string]reflect.Type{}
	var allowed []string
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = t.Field(i).Type
		allowed = append(allowed, tag)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if first, dup := seen[k.Value]; dup {
			return s.f.errorf(k.Line, "key %q given twice in %s (lines %d and %d)", k.Value, where(path), first, k.Line)
		}
		seen[k.Value] = k.Line
		if k.Tag == "!!merge" { // <<: *anchor (or a list of them) merges keys in
			if err := s.merge(n.Content[i+1], t, path); err != nil {
				return err
			}
			continue
		}
		ft, ok := fields[k.Value]
		if !ok {
			return s.f.errorf(k.Line, "unknown key %q in %s; allowed: %s", k.Value, where(path), strings.Join(allowed, ", "))
		}
		if err := s.walk(n.Content[i+1], ft, join(path, k.Value)); err != nil {
			return err
		}
		s.lines[join(path, k.Value)] = k.Line
	}
	return nil
}

// merge checks the mapping (or list of mappings) a merge key brings in.
func (s *shape) merge(v *yaml.Node, t reflect.Type, path string) error {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			if err := s.merge(m, t, path); err != nil {
				return err
			}
		}
		return nil
	}
	return s.mapping(v, t, path)
}

// scalar checks a plain value against a bool, number or string field.
func (s *shape) scalar(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.ScalarNode {
		return s.f.errorf(n.Line, "%s: want a single value, not %s", path, kindName(n))
	}
	switch t.Kind() {
	case reflect.Bool:
		if n.Tag != "!!bool" {
			return s.f.errorf(n.Line, "%s: want true or false, not %q", path, n.Value)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(n.Value, 0, t.Bits()); n.Tag != "!!int" || err != nil {
			return s.f.errorf(n.Line, "%s: want a whole number, not %q", path, n.Value)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, err := strconv.ParseUint(n.Value, 0, t.Bits()); n.Tag != "!!int" || err != nil {
			return s.f.errorf(n.Line, "%s: want a whole number from 0 to %d, not %q", path, uint64(1)<<t.Bits()-1, n.Value)
		}
	case reflect.String:
		// Any plain value reads as text (a port list item 22 becomes "22").
	}
	return nil
}

func (s *shape) duration(n *yaml.Node, path string) error {
	if n.Kind == yaml.ScalarNode {
		if _, err := time.ParseDuration(n.Value); err == nil {
			return nil
		}
	}
	return s.f.errorf(n.Line, "%s: bad duration %q (want e.g. 2ms, 1s)", path, n.Value)
}

func (s *shape) hex(n *yaml.Node, path string) error {
	if n.Kind == yaml.ScalarNode {
		if _, err := strconv.ParseUint(n.Value, 0, 32); err == nil {
			return nil
		}
	}
	return s.f.errorf(n.Line, "%s: bad 32-bit value %q (want e.g. 0x100 or 256)", path, n.Value)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "keys and values"
	}
	return fmt.Sprintf("%q", n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// entryName names list item path ("plugins[1]") for people: "plugin entry 2".
func entryName(path string) string {
	parent, idx, _ := strings.Cut(strings.TrimSuffix(path, "]"), "[")
	i, _ := strconv.Atoi(idx)
	if parent == "plugins" {
		parent = "plugin"
	}
	return fmt.Sprintf("%s entry %d", parent, i+1)
}

// where names a place in the file for people: "plugin entry", "queue".
func where(path string) string {
	switch {
	case path == "":
		return "the top level"
	case strings.HasPrefix(path, "plugins[") && strings.HasSuffix(path, "]"):
		return "plugin entry"
	}
	return path
}
