package sshconn_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

func TestPreflight(t *testing.T) {
	servers := map[sshtest.SudoMode]*sshtest.Server{}
	for _, m := range []sshtest.SudoMode{sshtest.SudoOK, sshtest.SudoPassword, sshtest.SudoTTY, sshtest.SudoDenied, sshtest.SudoNone} {
		servers[m] = sshtest.Start(t, sshtest.Options{Sudo: m})
	}
	tests := []struct {
		name       string
		mode       sshtest.SudoMode
		pty        bool
		knownHosts func(s *sshtest.Server) string
		want       sshconn.SudoStatus
		wantDetail string
		wantOK     bool
	}{
		{name: "sudo ok", mode: sshtest.SudoOK, want: sshconn.SudoOK, wantOK: true},
		{name: "sudo needs a password", mode: sshtest.SudoPassword, want: sshconn.SudoNeedsPassword, wantDetail: "a password is required"},
		{name: "sudo needs a password, even with a pty", mode: sshtest.SudoPassword, pty: true, want: sshconn.SudoNeedsPassword, wantDetail: "a password is required"},
		{name: "sudo needs a tty", mode: sshtest.SudoTTY, want: sshconn.SudoNeedsTTY, wantDetail: "you must have a tty to run sudo"},
		{name: "sudo needs a tty, pty mode works", mode: sshtest.SudoTTY, pty: true, want: sshconn.SudoOK, wantOK: true},
		{name: "sudo denied", mode: sshtest.SudoDenied, want: sshconn.SudoDenied, wantDetail: "is not allowed to execute"},
		{name: "sudo missing", mode: sshtest.SudoNone, want: sshconn.SudoMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := servers[tt.mode]
			pool, _ := newPool(t)
			cfg := nodeConfig(t, "n1", s, "")
			cfg.PTY = tt.pty
			start := time.Now()
			pf := pool.Preflight(ctxFor(t, 20*time.Second), cfg)
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("preflight took %s", d)
			}
			if !pf.Reachable || !pf.HostKeyOK || !pf.Authenticated || pf.HostKey != ssh.FingerprintSHA256(s.HostKey) {
				t.Errorf("connection part: %+v", pf)
			}
			if pf.Sudo != tt.want || pf.OK() != tt.wantOK || !strings.Contains(pf.Detail, tt.wantDetail) {
				t.Errorf("sudo = %s (ok=%t, detail %q), want %s (ok=%t, detail %q)", pf.Sudo, pf.OK(), pf.Detail, tt.want, tt.wantOK, tt.wantDetail)
			}
			t.Log(pf)
		})
	}

	t.Run("PTY mode makes commands work on a requiretty node", func(t *testing.T) {
		pool, _ := newPool(t)
		cfg := nodeConfig(t, "n1", servers[sshtest.SudoTTY], "")
		cfg.PTY = true
		c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"echo", "a b", "it's"}, Sudo: true})
		if err != nil || res.ExitCode != 0 || string(res.Stdout) != "a b it's\n" {
			t.Fatalf("res %+v err %v", res, err)
		}
	})

	t.Run("changed host key", func(t *testing.T) {
		s := servers[sshtest.SudoOK]
		pool, _ := newPool(t)
		kh := writeKnownHosts(t, khLine(s.KnownHostsName(), newPub(t, "ed25519")))
		pf := pool.Preflight(ctxFor(t, 20*time.Second), nodeConfig(t, "n1", s, kh))
		if !pf.Reachable || pf.HostKeyOK || pf.Authenticated || pf.Sudo != sshconn.SudoUnchecked || pf.OK() {
			t.Errorf("preflight %+v", pf)
		}
		if pf.HostKey != ssh.FingerprintSHA256(s.HostKey) || !errors.As(pf.Err, new(*sshconn.HostKeyMismatchError)) {
			t.Errorf("HostKey %q err %v", pf.HostKey, pf.Err)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		s := servers[sshtest.SudoOK]
		pool, _ := newPool(t)
		pf := pool.Preflight(ctxFor(t, 20*time.Second), nodeConfig(t, "n1", s, writeKnownHosts(t)))
		if !pf.Reachable || pf.HostKeyOK || !errors.As(pf.Err, new(*sshconn.UnknownHostError)) || pf.HostKey == "" {
			t.Errorf("preflight %+v", pf)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		pool, _ := newPool(t)
		pf := pool.Preflight(ctxFor(t, 20*time.Second), sshconn.Config{Node: "gone", Address: "127.0.0.1", Port: port,
			KnownHostsFiles: []string{writeKnownHosts(t)}, ConnectTimeout: 2 * time.Second})
		if pf.Reachable || pf.OK() || pf.Err == nil || pf.Sudo != sshconn.SudoUnchecked {
			t.Errorf("preflight %+v", pf)
		}
	})
}

func TestClassifySudo(t *testing.T) {
	tests := []struct {
		code int
		out  string
		want sshconn.SudoStatus
	}{
		{0, "", sshconn.SudoOK},
		{1, "sudo: a password is required", sshconn.SudoNeedsPassword},
		{1, "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\nsudo: a password is required", sshconn.SudoNeedsPassword},
		{1, "sudo: no tty present and no askpass program specified", sshconn.SudoNeedsPassword},
		{1, "sudo: sorry, you must have a tty to run sudo", sshconn.SudoNeedsTTY},
		{1, "sudo: a terminal is required", sshconn.SudoNeedsTTY},
		{1, "Sorry, user deploy is not allowed to execute '/usr/bin/true' as root on w1.", sshconn.SudoDenied},
		{1, "deploy is not in the sudoers file.  This incident will be reported.", sshconn.SudoDenied},
		{1, "deploy is not in the sudoers file.", sshconn.SudoDenied},
		{1, "Sorry, user deploy may not run sudo on w1.", sshconn.SudoDenied},
		{127, "bash: line 1: sudo: command not found", sshconn.SudoMissing},
		{127, "sh: 1: exec: sudo: not found", sshconn.SudoMissing},
		{1, "sudo: unable to resolve host w1", sshconn.SudoFailed},
	}
	for _, tt := range tests {
		if got := sshconn.ClassifySudo(tt.code, tt.out); got != tt.want {
			t.Errorf("ClassifySudo(%d, %q) = %s, want %s", tt.code, tt.out, got, tt.want)
		}
	}
}
