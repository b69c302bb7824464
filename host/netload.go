package host

import (
	"os"
	"path/filepath"

	"github.com/luafw/luafw/host/netset"
)

// loadSet reads a CIDR list file (relative paths from the plugin's
// directory), once per loaded set of plugins.
func (p *plugin) loadSet(path string) (*netset.Set, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.spec.File), path)
	}
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	if s, ok := p.files[path]; ok {
		return s, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := netset.Read(f, path)
	if err != nil {
		return nil, err
	}
	p.files[path] = s
	return s, nil
}
