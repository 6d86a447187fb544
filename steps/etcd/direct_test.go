package etcd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// argsWith is the kind's decoded arguments: defaults, then overrides
// (string, int or a cty.Value).
func argsWith(t *testing.T, over map[string]any) cty.Value {
	t.Helper()
	m := map[string]cty.Value{}
	for _, a := range directSchema.Args {
		m[a.Name] = cty.NullVal(a.Type)
		if a.Default != cty.NilVal {
			m[a.Name] = a.Default
		}
	}
	for k, v := range over {
		if _, ok := m[k]; !ok {
			t.Fatalf("no argument %q", k)
		}
		switch v := v.(type) {
		case string:
			m[k] = cty.StringVal(v)
		case int:
			m[k] = cty.NumberIntVal(int64(v))
		case cty.Value:
			m[k] = v
		}
	}
	return cty.ObjectVal(m)
}

func directRequest(t *testing.T, over map[string]any) *engine.Request {
	t.Helper()
	return &engine.Request{
		Address: "step.backup",
		Step:    &plans.Step{Kind: "etcd_snapshot_direct", Name: "backup", Schema: directSchema},
		Args:    engine.Args{V: argsWith(t, over)},
		Config:  &plans.StepConfig{Timeout: time.Minute},
		Env:     &engine.Env{},
	}
}

// writeCerts writes a CA, and a client certificate and key it signed.
func writeCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-ca"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	ca, cert, key = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return ca, cert, key
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheckDirect(t *testing.T) {
	tests := []struct {
		over    map[string]any
		wantArg string
	}{
		{map[string]any{"dir": "/b"}, ""},
		{map[string]any{"dir": "/b", "endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379"}, "endpoints"},
		{map[string]any{"dir": "/b", "endpoints": "10.0.0.1:2379"}, "endpoints"},
		{map[string]any{"dir": "/b", "endpoints": "https://10.0.0.1"}, "endpoints"},
		{map[string]any{"dir": "/b", "endpoints": cty.UnknownVal(cty.String)}, ""},
		{map[string]any{"dir": "/b", "name": "sub/x.db"}, "name"},
		{map[string]any{"dir": "/b", "name": ".hidden.db"}, "name"},
		{map[string]any{"dir": "/b", "keep": -1}, "keep"},
	}
	for _, tt := range tests {
		errs := checkDirect(argsWith(t, tt.over))
		got := ""
		if len(errs) > 0 {
			got = errs[0].Arg
		}
		if got != tt.wantArg || len(errs) > 1 {
			t.Errorf("%v: errors %+v, want one on %q", tt.over, errs, tt.wantArg)
		}
	}
}

func TestDirectPlanOffline(t *testing.T) {
	req := directRequest(t, map[string]any{"dir": "/backup/etcd", "name": "etcd-snapshot-x.db", "keep": 7})
	req.Env.Offline = true
	ch, err := (Direct{}).Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(append(append([]string{ch.Summary}, ch.Details...), ch.Warnings...), "\n")
	for _, want := range []string{
		"etcd snapshot from https://127.0.0.1:2379 to /backup/etcd/etcd-snapshot-x.db on this machine",
		"/backup/etcd/.etcd-snapshot-x.db.part",
		"equivalent: etcdctl '--endpoints=https://127.0.0.1:2379' '--cacert=/etc/kubernetes/pki/etcd/ca.crt'",
		"keep the newest 7 etcd-snapshot-*.db in /backup/etcd",
		"offline: the certificate files, the directory and etcd at https://127.0.0.1:2379 were not checked",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("plan lacks %q:\n%s", want, all)
		}
	}
	if ch.Action != engine.ActionChange || len(ch.Blockers) > 0 || len(ch.Commands) > 0 {
		t.Errorf("change = %+v", ch)
	}
	if p := ch.Outputs.GetAttr("path"); !p.IsKnown() || p.AsString() != "/backup/etcd/etcd-snapshot-x.db" {
		t.Errorf("path output = %#v", p)
	}

	req.Node = &plans.Node{Name: "cp-1"}
	if _, err := (Direct{}).Plan(context.Background(), req); err == nil || !strings.Contains(err.Error(), "top-level step") {
		t.Errorf("in a phase: %v", err)
	}
}

func TestDirectPlanOnline(t *testing.T) {
	defer func(d time.Duration) { PlanProbe = d }(PlanProbe)
	PlanProbe = 2 * time.Second
	certs := t.TempDir()
	ca, cert, key := writeCerts(t, certs)
	ep := "https://" + closedPort(t)

	t.Run("missing certificate", func(t *testing.T) {
		req := directRequest(t, map[string]any{"dir": t.TempDir(), "cacert": ca, "cert": filepath.Join(certs, "nope.crt"), "key": key, "endpoints": ep})
		ch, err := (Direct{}).Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Blockers) != 1 || !strings.Contains(ch.Blockers[0], "cert: stat "+filepath.Join(certs, "nope.crt")+": no such file") {
			t.Errorf("blockers = %q", ch.Blockers)
		}
	})

	t.Run("etcd does not answer, bounded; retention preview", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "snaps")
		os.Mkdir(dir, 0o700)
		for i, n := range []string{"etcd-snapshot-1.db", "etcd-snapshot-2.db", "etcd-snapshot-3.db"} {
			p := filepath.Join(dir, n)
			os.WriteFile(p, nil, 0o600)
			mt := time.Now().Add(-time.Duration(3-i) * time.Hour)
			os.Chtimes(p, mt, mt)
		}
		os.WriteFile(filepath.Join(dir, ".etcd-snapshot-0.db.part"), nil, 0o600)
		req := directRequest(t, map[string]any{"dir": dir, "cacert": ca, "cert": cert, "key": key, "endpoints": ep, "keep": 2, "name": "etcd-snapshot-4.db"})
		start := time.Now()
		ch, err := (Direct{}).Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > PlanProbe+5*time.Second {
			t.Errorf("the probe took %s, bound %s", took, PlanProbe)
		}
		if len(ch.Blockers) != 1 || !strings.Contains(ch.Blockers[0], "etcd at "+ep+" does not answer") {
			t.Errorf("blockers = %q", ch.Blockers)
		}
		all := strings.Join(append(ch.Details, ch.Warnings...), "\n")
		for _, want := range []string{
			"retention would delete now: " + filepath.Join(dir, "etcd-snapshot-2.db") + " " + filepath.Join(dir, "etcd-snapshot-2.db.sha256") + " " + filepath.Join(dir, "etcd-snapshot-1.db") + " ",
			"left by interrupted runs, never published, not deleted by retention: " + filepath.Join(dir, ".etcd-snapshot-0.db.part"),
		} {
			if !strings.Contains(all, want) {
				t.Errorf("plan lacks %q:\n%s", want, all)
			}
		}
		// Nothing was written by planning.
		if entries, _ := os.ReadDir(dir); len(entries) != 4 {
			t.Errorf("plan changed %s: %d entries", dir, len(entries))
		}
	})

	t.Run("a verified snapshot of that name is a no-op; a bad one blocks", func(t *testing.T) {
		dir := t.TempDir()
		final := filepath.Join(dir, "etcd-snapshot-x.db")
		snapshotFile(t, final, 4)
		os.WriteFile(final+".sha256", []byte(fileSHA(t, final)+"  etcd-snapshot-x.db\n"), 0o600)
		req := directRequest(t, map[string]any{"dir": dir, "name": "etcd-snapshot-x.db", "cacert": ca, "cert": cert, "key": key, "endpoints": ep})
		ch, err := (Direct{}).Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Action != engine.ActionNoOp || !ch.Outputs.IsWhollyKnown() || ch.Outputs.GetAttr("sha256").AsString() != fileSHA(t, final) {
			t.Errorf("change = %+v", ch)
		}
		os.Truncate(final, 4096)
		ch, err = (Direct{}).Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Blockers) != 1 || !strings.Contains(ch.Blockers[0], "already exists and does not verify") {
			t.Errorf("blockers = %q", ch.Blockers)
		}
	})
}

func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCerts(t, dir)
	if _, err := clientTLS("https://127.0.0.1:2379", ca, cert, key); err != nil {
		t.Fatal(err)
	}
	if c, err := clientTLS("http://127.0.0.1:2379", "/nope", "/nope", "/nope"); err != nil || c != nil {
		t.Errorf("http: %v %v", c, err)
	}
	_, otherCert, _ := writeCerts(t, t.TempDir())
	if _, err := clientTLS("https://127.0.0.1:2379", ca, otherCert, key); err == nil || !strings.Contains(err.Error(), otherCert) {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := clientTLS("https://127.0.0.1:2379", key, cert, key); err == nil || !strings.Contains(err.Error(), "cacert "+key+" holds no PEM certificate") {
		t.Errorf("bad CA: %v", err)
	}
}
