package sshconn_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/sshconn"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	planCfg := writeFile(t, dir, "plan_ssh_config", `
Host w1
  HostName 10.0.0.11
  Port 2201
  IdentityFile /plan/id_w1

Host w*
  User planuser
  IdentityFile /plan/id_workers
  ServerAliveInterval 7

Host cp1
  HostName %h.internal
  ProxyJump ops@bastion:2022

Host bastion
  HostName 10.0.0.1
  IdentityFile /plan/id_bastion

Host 10.9.9.*
  User byaddress
`)
	userCfg := writeFile(t, dir, "user_config", `
Host w1
  HostName 192.168.1.1
  User useruser
  Port 2299
  IdentityFile /user/id_w1
  UserKnownHostsFile /user/kh1 /user/kh2

Host *
  ConnectTimeout 3
  ServerAliveCountMax 5
  User fallback
`)
	pool, _ := newPool(t, sshconn.WithUserSSHConfig(userCfg))
	kh := []string{"/plan/known_hosts"}

	tests := []struct {
		name  string
		cfg   sshconn.Config
		check func(t *testing.T, tg *sshconn.Target)
	}{
		{"plan file beats user file", sshconn.Config{Node: "w1", SSHConfigFiles: []string{planCfg}}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "Host", tg.Host, "10.0.0.11")
			eq(t, "Port", tg.Port, 2201)
			eq(t, "User", tg.User, "planuser")
			eq(t, "KnownHostsName", tg.KnownHostsName, "[10.0.0.11]:2201")
			// IdentityFile accumulates, plan first.
			eqSlice(t, "IdentityFiles", tg.IdentityFiles, []string{"/plan/id_w1", "/plan/id_workers", "/user/id_w1"})
			eqSlice(t, "KnownHostsFiles", tg.KnownHostsFiles, []string{"/user/kh1", "/user/kh2"})
			eq(t, "KeepaliveInterval", tg.KeepaliveInterval, 7*time.Second)
			eq(t, "KeepaliveMaxMissed", tg.KeepaliveMaxMissed, 5)
			eq(t, "ConnectTimeout", tg.ConnectTimeout, 3*time.Second)
		}},
		{"explicit settings beat both", sshconn.Config{Node: "w1", Address: "127.0.0.9", Port: 22, User: "explicit",
			IdentityFiles: []string{"/explicit/id"}, KnownHostsFiles: kh, ConnectTimeout: time.Second, KeepaliveInterval: -1,
			SSHConfigFiles: []string{planCfg}}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "Host", tg.Host, "127.0.0.9")
			eq(t, "Port", tg.Port, 22)
			eq(t, "User", tg.User, "explicit")
			eq(t, "KnownHostsName", tg.KnownHostsName, "127.0.0.9")
			eqSlice(t, "IdentityFiles", tg.IdentityFiles, []string{"/explicit/id"})
			eqSlice(t, "KnownHostsFiles", tg.KnownHostsFiles, kh)
			eq(t, "ConnectTimeout", tg.ConnectTimeout, time.Second)
			eq(t, "KeepaliveInterval", tg.KeepaliveInterval, -time.Duration(1))
		}},
		{"user file alone", sshconn.Config{Node: "w1"}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "Host", tg.Host, "192.168.1.1")
			eq(t, "Port", tg.Port, 2299)
			eq(t, "User", tg.User, "useruser")
		}},
		{"HostName %h and ProxyJump", sshconn.Config{Node: "cp1", SSHConfigFiles: []string{planCfg}, KnownHostsFiles: kh}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "Host", tg.Host, "cp1.internal")
			if tg.Jump == nil {
				t.Fatal("no jump host")
			}
			eq(t, "Jump.Host", tg.Jump.Host, "10.0.0.1")
			eq(t, "Jump.Port", tg.Jump.Port, 2022)
			eq(t, "Jump.User", tg.Jump.User, "ops")
			eqSlice(t, "Jump.IdentityFiles", tg.Jump.IdentityFiles, []string{"/plan/id_bastion"})
			eqSlice(t, "Jump.KnownHostsFiles", tg.Jump.KnownHostsFiles, kh)
			eq(t, "String", tg.String(), "fallback@cp1.internal:22 via ops@10.0.0.1:2022")
		}},
		{"ProxyJump none overrides config", sshconn.Config{Node: "cp1", ProxyJump: "none", SSHConfigFiles: []string{planCfg}}, func(t *testing.T, tg *sshconn.Target) {
			if tg.Jump != nil {
				t.Errorf("Jump = %v, want none", tg.Jump)
			}
		}},
		{"explicit ProxyJump chain", sshconn.Config{Node: "x", Address: "10.1.1.1", ProxyJump: "a@h1:2001,b@h2"}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "String", tg.String(), "fallback@10.1.1.1:22 via b@h2:22 via a@h1:2001")
		}},
		{"Host pattern matched against Address", sshconn.Config{Node: "n9", Address: "10.9.9.9", SSHConfigFiles: []string{planCfg}}, func(t *testing.T, tg *sshconn.Target) {
			eq(t, "User", tg.User, "byaddress")
			eq(t, "Host", tg.Host, "10.9.9.9")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, err := pool.Resolve(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, tg)
		})
	}

	if _, err := pool.Resolve(sshconn.Config{Node: "w1", SSHConfigFiles: []string{filepath.Join(dir, "missing")}}); err == nil {
		t.Error("a missing plan-given ssh_config must be an error")
	}
}

func TestResolveDefaults(t *testing.T) {
	pool, _ := newPool(t)
	tg, err := pool.Resolve(sshconn.Config{Node: "n1", Address: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "Port", tg.Port, 22)
	eq(t, "ConnectTimeout", tg.ConnectTimeout, sshconn.DefaultConnectTimeout)
	eq(t, "KeepaliveInterval", tg.KeepaliveInterval, sshconn.DefaultKeepaliveInterval)
	eq(t, "KeepaliveMaxMissed", tg.KeepaliveMaxMissed, sshconn.DefaultKeepaliveMaxMissed)
	eq(t, "PTY", tg.PTY, false)
	if len(tg.KnownHostsFiles) == 0 {
		t.Error("no default known_hosts files")
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqSlice(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s = %q, want %q", what, got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s = %q, want %q", what, got, want)
			return
		}
	}
}
