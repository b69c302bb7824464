package tests

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFleetTrustsOnlyCredentials: a Redis backend without credentials is
// refused unless the configuration says auth: none (and then a warning is
// logged); a wrong password or a failed TLS handshake fails the start with
// a clear error; with
// on_auth_failure: local the node starts on local state, says why it is
// not connected in `luafw status`, and says it again in the log.
func TestFleetTrustsOnlyCredentials(t *testing.T) {
	needRedis(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newFleet(t, ctx)
	// runFails runs luafw with the configuration and returns its output,
	// failing the test if it keeps running.
	runFails := func(cfg string) string {
		t.Helper()
		files := fleetConfig("10.201.5.2:6379")
		files["luafw.yaml"] = cfg
		dir := t.TempDir()
		writeFiles(t, dir, files)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd, err := f.l.Router.Command(cctx, luafwBinary(t), "run", "--config", filepath.Join(dir, "luafw.yaml"), "--pidfile", filepath.Join(dir, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if cctx.Err() != nil || !errors.As(err, &ee) {
			t.Fatalf("luafw kept running or exited 0 (%v):\n%s", err, out)
		}
		return string(out)
	}
	base := fleetConfig("10.201.5.2:6379")["luafw.yaml"]

	// No credentials at all: refused at the configuration.
	noCreds := strings.Replace(base, ", password: "+fleetPassword, "", 1)
	if out := runFails(noCreds); !strings.Contains(out, "state.redis: no credentials") || !strings.Contains(out, "auth: none") {
		t.Errorf("no credentials: %s", out)
	}
	// A wrong password: the start fails and says why.
	wrong := strings.Replace(base, "password: "+fleetPassword, "password: not-the-password", 1)
	if out := runFails(wrong); !strings.Contains(out, "refused the credentials") || !strings.Contains(out, "WRONGPASS") {
		t.Errorf("wrong password: %s", out)
	}

	// TLS: a redis-server with a certificate of its own CA. A node that
	// trusts another CA fails the start; one that trusts this CA runs.
	dir := t.TempDir()
	ca, caKey := newCA(t, dir, "ca")
	newCA(t, dir, "other")
	serverCert(t, dir, ca, caKey, "10.201.5.2")
	tlsRedis := startTLSRedis(t, f, dir)
	defer tlsRedis()
	withTLS := func(caFile string) string {
		c := strings.Replace(base, `addrs: ["10.201.5.2:6379"], password: `+fleetPassword,
			`addrs: ["10.201.5.2:6390"], password: `+fleetPassword+`, tls: {enabled: true, ca_file: `+filepath.Join(dir, caFile)+`}`, 1)
		if c == base {
			t.Fatal("the configuration did not change")
		}
		return c
	}
	if out := runFails(withTLS("other.pem")); !strings.Contains(out, "failed the TLS handshake") || !strings.Contains(out, "certificate") {
		t.Errorf("TLS with a server the node does not trust: %s", out)
	}
	d := startDaemon(t, f.l.Router, map[string]string{"luafw.yaml": withTLS("ca.pem"), "fleet.lua": fleetPlugin})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(fleetInterval) {
		if st := status(t, ctx, f.l.Router); st.Backend != nil && st.Backend.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("TLS with the server's CA: never connected")
		}
	}
	d.stop()

	// on_auth_failure: local starts anyway, and says it is not connected.
	local := strings.Replace(wrong, "password: not-the-password", "password: not-the-password, on_auth_failure: local", 1)
	d = startDaemon(t, f.l.Router, map[string]string{"luafw.yaml": local, "fleet.lua": fleetPlugin})
	d.waitLog("refused this node", 5*time.Second)
	st := status(t, ctx, f.l.Router)
	if st.Backend == nil || st.Backend.Connected || st.Backend.Reason != "auth" || st.Backend.AuthErrors == 0 {
		t.Errorf("status with a wrong password: %+v", st.Backend)
	}
	d.stop()

	// auth: none against a Redis without a password: runs, with a warning.
	f.stopRedis()
	f.startRedisOpen(t)
	open := strings.Replace(base, "password: "+fleetPassword, "auth: none", 1)
	d = startDaemon(t, f.l.Router, map[string]string{"luafw.yaml": open, "fleet.lua": fleetPlugin})
	d.waitLog("Redis is used without credentials", 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(fleetInterval) {
		if st := status(t, ctx, f.l.Router); st.Backend != nil && st.Backend.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("auth: none: never connected")
		}
	}
}

// newCA writes a self-signed CA certificate (NAME.pem) into dir.
func newCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "luafw test " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// serverCert writes server.crt and server.key for ip, signed by ca.
func serverCert(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, ip string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "server.crt"), "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "server.key"), "EC PRIVATE KEY", kb)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSRedis starts a redis-server speaking only TLS on
// 10.201.5.2:6390 in the fleet's store namespace, with the certificate in
// dir and the fleet's password; it returns its stopper.
func startTLSRedis(t *testing.T, f *fleet, dir string) func() {
	t.Helper()
	_, stop := f.startStore(t, "10.201.5.2:6390", "redis-server", "--bind", "10.201.5.2", "--protected-mode", "no", "--port", "0",
		"--tls-port", "6390", "--tls-cert-file", filepath.Join(dir, "server.crt"), "--tls-key-file", filepath.Join(dir, "server.key"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no", "--requirepass", fleetPassword,
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	return stop
}
