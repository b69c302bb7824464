package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Key is one key of the configuration file as its reference, luafw.yaml(5)
// (written by `luafw man`), lists it.
type Key struct {
	Path string // "queue.balance", "plugins[].file", "divert.HOOK.dports"
	Type string // what its value is, in the file's words
	Doc  string // what it does (keyDocs)
}

// Keys lists every key of the configuration file, in the order of File's
// fields, from the same yaml tags shape checks a file against: a key Load
// accepts is listed, and only those. Each key's text comes from keyDocs;
// TestKeysDocumented keeps the two in step.
func Keys() []Key {
	var out []Key
	walkKeys(reflect.TypeFor[File](), "", &out)
	docs := keyDocs()
	for i := range out {
		out[i].Doc = docs[out[i].Path]
	}
	return out
}

func walkKeys(t reflect.Type, prefix string, out *[]Key) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		path := join(prefix, tag)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		*out = append(*out, Key{Path: path, Type: typeWords(ft)})
		switch {
		case isSection(ft):
			walkKeys(ft, path, out)
		case ft.Kind() == reflect.Slice && isSection(ft.Elem()):
			walkKeys(ft.Elem(), path+"[]", out)
		case ft.Kind() == reflect.Map && isSection(ft.Elem()):
			walkKeys(ft.Elem(), path+"."+mapKeyName(path), out)
		}
	}
}

// mapKeyName names the free keys of the map at path, in a key's path.
func mapKeyName(path string) string {
	if path == "divert" {
		return "HOOK"
	}
	return "NAME"
}

// isSection reports whether t is written as keys of its own.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(parserType)
}

// typeWords describes a value of type t for people.
func typeWords(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration (2ms, 1.5s, 1m)"
	case hexType:
		return "32-bit number (0x100 or 256)"
	case anyType:
		return "any value"
	case reflect.TypeFor[Size]():
		return "size (4096, 512KiB, 64MiB, 1GB)"
	case reflect.TypeFor[Rate]():
		return "rate (100/s, 6000/m; 0 for no limit)"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("whole number from 0 to %d", uint64(1)<<t.Bits()-1)
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice:
		if isSection(t.Elem()) {
			return "list of entries"
		}
		return "list of " + plural(typeWords(t.Elem()))
	case reflect.Map:
		if isSection(t.Elem()) {
			return "keys and values"
		}
		return "free-form keys and values"
	case reflect.Struct:
		return "keys and values"
	}
	return t.String()
}

// plural turns "string" into "strings", "whole number from ..." into
// "whole numbers from ...".
func plural(words string) string {
	head, tail, _ := strings.Cut(words, " (")
	head, rest, _ := strings.Cut(head, " from")
	s := head + "s"
	if rest != "" {
		s += " from" + rest
	}
	if tail != "" {
		s += " (" + tail
	}
	return s
}
