package plugintest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
)

func TestDNSQuery(t *testing.T) {
	got, err := DNSQuery("www.example.com.", 28, 0xbeef)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: id, RD, 1 question
		3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
		0, 28, 0, 1, // AAAA, IN
	}
	if !bytes.Equal(got, want) {
		t.Errorf("DNSQuery =\n% x\nwant\n% x", got, want)
	}
	if _, err := DNSQuery("a..b", 1, 0); err == nil {
		t.Error("empty label: no error")
	}
	if _, err := DNSQuery(string(bytes.Repeat([]byte("a"), 64)), 1, 0); err == nil {
		t.Error("64-byte label: no error")
	}
	for name, want := range map[string]uint16{"a": 1, "AAAA": 28, "https": 65, "99": 99} {
		if got, err := DNSType(name); err != nil || got != want {
			t.Errorf("DNSType(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := DNSType("BOGUS"); err == nil {
		t.Error("DNSType(BOGUS): no error")
	}
}

// TestTLSClientHello hands the record to crypto/tls's server, which must
// parse it and see the server name and ALPN protocols.
func TestTLSClientHello(t *testing.T) {
	for _, tc := range []struct {
		sni  string
		alpn []string
	}{
		{"example.com", []string{"h2", "http/1.1"}},
		{"", nil},
	} {
		rec, err := TLSClientHello(tc.sni, tc.alpn)
		if err != nil {
			t.Fatal(err)
		}
		info := parseHello(t, rec)
		if info.ServerName != tc.sni {
			t.Errorf("server name %q, want %q", info.ServerName, tc.sni)
		}
		if !slices.Equal(info.SupportedProtos, tc.alpn) {
			t.Errorf("ALPN %q, want %q", info.SupportedProtos, tc.alpn)
		}
		if !slices.Contains(info.SupportedVersions, tls.VersionTLS13) {
			t.Errorf("versions %x lack TLS 1.3", info.SupportedVersions)
		}
	}
	again, _ := TLSClientHello("example.com", []string{"h2", "http/1.1"})
	first, _ := TLSClientHello("example.com", []string{"h2", "http/1.1"})
	if !bytes.Equal(again, first) {
		t.Error("TLSClientHello is not deterministic")
	}
	if _, err := TLSClientHello("x", []string{""}); err == nil {
		t.Error("empty ALPN protocol: no error")
	}
}

var errSeen = errors.New("client hello seen")

// parseHello returns what a Go TLS server read from the record.
func parseHello(t *testing.T, rec []byte) *tls.ClientHelloInfo {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		client.Write(rec)
		io.Copy(io.Discard, client)
	}()
	var info *tls.ClientHelloInfo
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		info = chi
		return nil, errSeen
	}}
	err := tls.Server(server, cfg).Handshake()
	server.Close()
	if info == nil {
		t.Fatalf("crypto/tls did not accept the ClientHello: %v", err)
	}
	return info
}
