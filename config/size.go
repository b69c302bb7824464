package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written as a number with an optional unit: B, KiB,
// MiB, GiB, TiB (powers of 1024, as in GOMEMLIMIT) or KB, MB, GB (powers
// of 1000): 4096, 512KiB, 1.5GiB, 10 MiB.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}

// ParseSize parses a size such as "64MiB".
func ParseSize(v string) (int64, error) {
	num, mult := strings.TrimSpace(v), 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n*mult >= 1<<62 {
		return 0, fmt.Errorf("bad size %q (want e.g. 4096, 512KiB, 64MiB, 1GiB)", v)
	}
	return int64(n * mult), nil
}

func (s *Size) parseScalar(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// UnmarshalYAML parses a size.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if err := s.parseScalar(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}
