package sshconn_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

func newPub(t testing.TB, kind string) ssh.PublicKey {
	t.Helper()
	var pub any
	switch kind {
	case "ed25519":
		p, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
	case "ecdsa":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func khLine(name string, k ssh.PublicKey) string { return knownhosts.Line([]string{name}, k) }

func TestHostKeyVerification(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	name := s.KnownHostsName()
	other := newPub(t, "ed25519")
	otherECDSA := newPub(t, "ecdsa")
	otherRSA := newPub(t, "rsa")
	serverFP := ssh.FingerprintSHA256(s.HostKey)

	type want int
	const (
		ok want = iota
		mismatch
		unknown
	)
	tests := []struct {
		name  string
		lines []string // known_hosts content ("" entries are kept as blank lines)
		noKH  bool     // known_hosts file does not exist
		tofu  bool
		want  want
		// for mismatch: the expected file line of the recorded key
		wantLine int
		revoked  bool
	}{
		{name: "plain port-specific entry", lines: []string{s.KnownHostsLine()}, want: ok},
		{name: "hashed entry", lines: []string{khLine(knownhosts.HashHostname(name), s.HostKey)}, want: ok},
		{name: "entry in a multi-name line", lines: []string{"other.example," + name + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))}, want: ok},
		{name: "known key plus another type", lines: []string{khLine(name, otherECDSA), s.KnownHostsLine()}, want: ok},
		{name: "entry for port 22 only is not this port", lines: []string{khLine(s.Host, s.HostKey)}, want: unknown},
		{name: "entry for another port only", lines: []string{khLine(fmt.Sprintf("[%s]:%d", s.Host, s.Port+1), s.HostKey)}, want: unknown},
		{name: "empty known_hosts", lines: nil, want: unknown},
		{name: "missing known_hosts", noKH: true, want: unknown},
		{name: "changed key", lines: []string{"# comment", "", khLine(name, other)}, want: mismatch, wantLine: 3},
		{name: "changed key, hashed entry", lines: []string{"# c", khLine(knownhosts.HashHostname(name), other)}, want: mismatch, wantLine: 2},
		{name: "changed key is not trusted on first use", lines: []string{khLine(name, other)}, tofu: true, want: mismatch, wantLine: 1},
		{name: "only a key type the server lacks", lines: []string{khLine(name, otherRSA)}, want: mismatch, wantLine: 1},
		{name: "revoked key", lines: []string{"@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey))), s.KnownHostsLine()}, want: mismatch, revoked: true},
		{name: "trust on first use", lines: []string{"# empty"}, tofu: true, want: ok},
		{name: "trust on first use creates the file", noKH: true, tofu: true, want: ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kh string
			if tt.noKH {
				kh = t.TempDir() + "/sub/known_hosts"
			} else {
				kh = writeKnownHosts(t, tt.lines...)
			}
			before, _ := os.ReadFile(kh)
			var mu sync.Mutex
			var events []sshconn.TrustEvent
			pool, logs := newPool(t, sshconn.WithTrustCallback(func(e sshconn.TrustEvent) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}))
			cfg := nodeConfig(t, "n1", s, kh)
			cfg.TrustOnFirstUse = tt.tofu
			start := time.Now()
			c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
			if time.Since(start) > 6*time.Second {
				t.Errorf("connect took %s", time.Since(start))
			}
			after, _ := os.ReadFile(kh)
			switch tt.want {
			case ok:
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if c.HostKey() != serverFP {
					t.Errorf("HostKey() = %s, want %s", c.HostKey(), serverFP)
				}
				if tt.tofu {
					if len(events) != 1 || events[0].Fingerprint != serverFP || events[0].File != kh || events[0].Host != name {
						t.Errorf("trust events = %+v", events)
					}
					if !strings.Contains(string(after), s.KnownHostsLine()) {
						t.Errorf("known_hosts after TOFU:\n%s", after)
					}
					if !strings.Contains(logs.String(), "trusted host key on first use") || !strings.Contains(logs.String(), serverFP) {
						t.Errorf("TOFU not logged:\n%s", logs.String())
					}
					// A fresh pool without TOFU now trusts the key.
					p2, _ := newPool(t)
					cfg.TrustOnFirstUse = false
					if _, err := p2.Client(ctxFor(t, 10*time.Second), cfg); err != nil {
						t.Errorf("reconnect after TOFU: %v", err)
					}
				}
			case unknown:
				var ue *sshconn.UnknownHostError
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v (%T), want *UnknownHostError", err, err)
				}
				if ue.PresentedFingerprint() != serverFP || ue.Host != name || ue.Node != "n1" || ue.TrustFile != kh {
					t.Errorf("UnknownHostError = %+v", ue)
				}
				if !strings.Contains(err.Error(), serverFP) {
					t.Errorf("message lacks the presented fingerprint: %v", err)
				}
			case mismatch:
				var me *sshconn.HostKeyMismatchError
				if !errors.As(err, &me) {
					t.Fatalf("err = %v (%T), want *HostKeyMismatchError", err, err)
				}
				msg := err.Error()
				if tt.revoked {
					if !me.Revoked || !strings.Contains(msg, "REVOKED") {
						t.Errorf("revoked not reported: %v", msg)
					}
					break
				}
				if len(me.Known) == 0 {
					t.Fatalf("no expected keys in %v", msg)
				}
				k := me.Known[0]
				if k.File != kh || k.Line != tt.wantLine {
					t.Errorf("known key at %s:%d, want %s:%d", k.File, k.Line, kh, tt.wantLine)
				}
				if !strings.Contains(msg, k.Fingerprint) || !strings.Contains(msg, fmt.Sprintf("%s:%d", kh, tt.wantLine)) {
					t.Errorf("message lacks expected fingerprint or file:line: %v", msg)
				}
				if me.Presented != nil && !strings.Contains(msg, serverFP) {
					t.Errorf("message lacks presented fingerprint: %v", msg)
				}
				if tt.name != "only a key type the server lacks" && me.PresentedFingerprint() != serverFP {
					t.Errorf("presented = %q, want %q", me.PresentedFingerprint(), serverFP)
				}
				if string(before) != string(after) {
					t.Errorf("known_hosts changed on mismatch:\n%s", after)
				}
				if len(events) != 0 {
					t.Errorf("trust callback called on mismatch: %+v", events)
				}
				if !strings.Contains(logs.String(), "host key verification failed") {
					t.Errorf("mismatch not logged")
				}
			}
		})
	}
}

// TestRebuiltNode: a node rebuilt with the same address and a new host key
// fails with both fingerprints; TrustHost (the explicit action) fixes it.
func TestRebuiltNode(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	kh := writeKnownHosts(t, "# lab known_hosts", s.KnownHostsLine())
	oldFP := ssh.FingerprintSHA256(s.HostKey)
	pool, _ := newPool(t)
	cfg := nodeConfig(t, "w1", s, kh)
	if _, err := pool.Client(ctxFor(t, 10*time.Second), cfg); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	s2 := s.Restart(t, sshtest.Options{})
	newFP := ssh.FingerprintSHA256(s2.HostKey)
	pool2, _ := newPool(t)
	cfg.TrustOnFirstUse = true // must not matter for a changed key
	_, err := pool2.Client(ctxFor(t, 10*time.Second), cfg)
	var me *sshconn.HostKeyMismatchError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want *HostKeyMismatchError", err)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{oldFP, newFP, kh + ":2", "w1", s.KnownHostsName()} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}

	if me.TrustFile != kh {
		t.Errorf("TrustFile = %q, want %q", me.TrustFile, kh)
	}
	// What `runbook trust-host w1` does after showing both fingerprints.
	replaced, err := sshconn.TrustHost(me.TrustFile, me.Host, me.Presented)
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced) != 1 || replaced[0].Fingerprint != oldFP || replaced[0].Line != 2 {
		t.Errorf("replaced = %+v", replaced)
	}
	pool3, _ := newPool(t)
	cfg.TrustOnFirstUse = false
	c, err := pool3.Client(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("after TrustHost: %v", err)
	}
	if c.HostKey() != newFP {
		t.Errorf("HostKey = %s, want %s", c.HostKey(), newFP)
	}
}

func TestTrustHostRewrite(t *testing.T) {
	oldK, newK, keep := newPub(t, "ed25519"), newPub(t, "ed25519"), newPub(t, "ed25519")
	blob := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	kh := writeKnownHosts(t,
		"# comment",
		"[10.0.0.5]:2222 "+blob(oldK),
		khLine(knownhosts.HashHostname("[10.0.0.5]:2222"), oldK),
		"alias.example,[10.0.0.5]:2222 "+blob(oldK),
		"* "+blob(keep),
		"[10.0.0.5]:2223 "+blob(keep),
		"10.0.0.5 "+blob(keep),
		"@cert-authority [10.0.0.5]:2222 "+blob(keep),
		"",
	)
	replaced, err := sshconn.TrustHost(kh, "10.0.0.5:2222", newK)
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced) != 3 {
		t.Fatalf("replaced %d entries, want 3: %+v", len(replaced), replaced)
	}
	for i, line := range []int{2, 3, 4} {
		if replaced[i].Line != line || replaced[i].Fingerprint != ssh.FingerprintSHA256(oldK) {
			t.Errorf("replaced[%d] = %+v", i, replaced[i])
		}
	}
	got, _ := os.ReadFile(kh)
	want := strings.Join([]string{
		"# comment",
		"alias.example " + blob(oldK),
		"* " + blob(keep),
		"[10.0.0.5]:2223 " + blob(keep),
		"10.0.0.5 " + blob(keep),
		"@cert-authority [10.0.0.5]:2222 " + blob(keep),
		"",
		"[10.0.0.5]:2222 " + blob(newK),
		"",
	}, "\n")
	if string(got) != want {
		t.Errorf("known_hosts:\n%s\nwant:\n%s", got, want)
	}
	st, _ := os.Stat(kh)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}

	// Port 22 is written without brackets; the file is created if missing.
	fresh := t.TempDir() + "/new/known_hosts"
	if _, err := sshconn.TrustHost(fresh, "[node1]:22", newK); err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(fresh)
	if string(got) != "node1 "+blob(newK)+"\n" {
		t.Errorf("fresh file: %q", got)
	}
}

// TestHostKeyAlgorithmFollowsKnownHosts: a host with several host keys must
// be asked for the type recorded in known_hosts, not for the client's
// favourite type (which would look like a changed key).
func TestHostKeyAlgorithmFollowsKnownHosts(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := sshtest.Start(t, sshtest.Options{ExtraHostKeys: []crypto.Signer{ec}})
	ecPub, err := ssh.NewPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  ssh.PublicKey
	}{{"ecdsa only", ecPub}, {"ed25519 only", s.HostKey}} {
		t.Run(tc.name, func(t *testing.T) {
			kh := writeKnownHosts(t, khLine(s.KnownHostsName(), tc.key))
			pool, _ := newPool(t)
			c, err := pool.Client(ctxFor(t, 10*time.Second), nodeConfig(t, "n1", s, kh))
			if err != nil {
				t.Fatal(err)
			}
			if c.HostKey() != ssh.FingerprintSHA256(tc.key) {
				t.Errorf("HostKey = %s, want %s", c.HostKey(), ssh.FingerprintSHA256(tc.key))
			}
		})
	}
}
