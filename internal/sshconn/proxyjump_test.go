package sshconn_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

// TestProxyJump reaches two nodes through one bastion sshd, configured from
// a plan-given ssh_config, and checks the bastion connection is shared and
// really carries the traffic.
func TestProxyJump(t *testing.T) {
	bastion := sshtest.Start(t, sshtest.Options{})
	// Targets listen on other loopback addresses and accept the bastion's
	// client key too, so that the same identity works end to end.
	key := bastion.ClientKey.PublicKey()
	t1 := sshtest.Start(t, sshtest.Options{Addr: "127.0.3.1", AuthorizedKeys: []ssh.PublicKey{key}})
	t2 := sshtest.Start(t, sshtest.Options{Addr: "127.0.3.2", AuthorizedKeys: []ssh.PublicKey{key}})
	kh := writeKnownHosts(t, bastion.KnownHostsLine(), t1.KnownHostsLine(), t2.KnownHostsLine())
	sshConfig := writeFile(t, t.TempDir(), "ssh_config", fmt.Sprintf(`
Host bastion
  HostName %s
  Port %d
  User %s
  IdentityFile %s

Host target1
  HostName %s
  Port %d
  ProxyJump bastion

Host target2
  HostName %s
  Port %d
  ProxyJump bastion

Host target*
  User %s
  IdentityFile %s
`, bastion.Host, bastion.Port, bastion.User, bastion.ClientKeyFile,
		t1.Host, t1.Port, t2.Host, t2.Port, t1.User, bastion.ClientKeyFile))

	t.Run("via ssh_config", func(t *testing.T) {
		pool, _ := newPool(t)
		for _, node := range []string{"target1", "target2"} {
			cfg := sshconn.Config{Node: node, SSHConfigFiles: []string{sshConfig}, KnownHostsFiles: []string{kh}, ConnectTimeout: 5 * time.Second}
			c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
			if err != nil {
				t.Fatalf("%s: %v", node, err)
			}
			if c.Target().Jump == nil || !strings.Contains(c.Target().String(), "via") {
				t.Errorf("%s: target %s has no jump", node, c.Target().String())
			}
			res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Script: `echo "$SSH_CONNECTION"`})
			if err != nil {
				t.Fatal(err)
			}
			// sshd's view: client ip, client port, server ip, server port.
			f := strings.Fields(string(res.Stdout))
			if len(f) != 4 || f[2] != c.Target().Host {
				t.Errorf("%s: SSH_CONNECTION %q", node, res.Stdout)
			}
		}
		if n := strings.Count(bastion.Log(), "Accepted publickey"); n != 1 {
			t.Errorf("bastion accepted %d logins, want 1 shared connection", n)
		}
	})

	t.Run("explicit ProxyJump, bastion inherits the node's identity", func(t *testing.T) {
		pool, _ := newPool(t)
		cfg := nodeConfig(t, "t1", t1, kh)
		cfg.IdentityFiles = []string{bastion.ClientKeyFile}
		cfg.ProxyJump = fmt.Sprintf("%s@%s:%d", bastion.User, bastion.Host, bastion.Port)
		c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"echo", "through"}}); err != nil || string(res.Stdout) != "through\n" {
			t.Fatalf("run: %v", err)
		}
	})

	t.Run("bastion that refuses forwarding", func(t *testing.T) {
		closed := sshtest.Start(t, sshtest.Options{ExtraConfig: "AllowTcpForwarding no"})
		kh2 := writeKnownHosts(t, closed.KnownHostsLine(), t1.KnownHostsLine())
		pool, _ := newPool(t)
		cfg := nodeConfig(t, "t1", t1, kh2)
		cfg.IdentityFiles = []string{bastion.ClientKeyFile, closed.ClientKeyFile}
		cfg.ProxyJump = fmt.Sprintf("%s@%s:%d", closed.User, closed.Host, closed.Port)
		_, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
		if err == nil || !strings.Contains(err.Error(), "via jump host") {
			t.Fatalf("err = %v, want a failure through the jump host", err)
		}
		t.Log(err)
	})

	t.Run("bastion host key is verified too", func(t *testing.T) {
		kh3 := writeKnownHosts(t, khLine(bastion.KnownHostsName(), newPub(t, "ed25519")), t1.KnownHostsLine())
		pool, _ := newPool(t)
		cfg := sshconn.Config{Node: "target1", SSHConfigFiles: []string{sshConfig}, KnownHostsFiles: []string{kh3}, ConnectTimeout: 5 * time.Second}
		_, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
		if err == nil || !strings.Contains(err.Error(), "has CHANGED") {
			t.Fatalf("err = %v, want the bastion's host key mismatch", err)
		}
	})
}
