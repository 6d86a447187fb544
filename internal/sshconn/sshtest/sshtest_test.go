package sshtest_test

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

// TestFakeSudo logs in with plain x/crypto/ssh and checks the fake sudo of
// each mode prints real sudo's message and exits 1.
func TestFakeSudo(t *testing.T) {
	tests := []struct {
		mode sshtest.SudoMode
		cmd  string
		code int
		want string
	}{
		{sshtest.SudoOK, "sudo -n -- echo hi", 0, "hi"},
		{sshtest.SudoPassword, "sudo -n true", 1, "sudo: a password is required"},
		{sshtest.SudoTTY, "sudo -n true", 1, "sudo: sorry, you must have a tty to run sudo"},
		{sshtest.SudoDenied, "sudo -n true", 1, "is not allowed to execute 'true' as root"},
		{sshtest.SudoNone, "sudo -n true", 127, "not found"},
	}
	for _, tt := range tests {
		s := sshtest.Start(t, sshtest.Options{Sudo: tt.mode})
		kh := t.TempDir() + "/known_hosts"
		if err := writeFile(kh, s.KnownHostsLine()+"\n"); err != nil {
			t.Fatal(err)
		}
		cb, err := knownhosts.New(kh)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(s.ClientKey)}, HostKeyCallback: cb})
		if err != nil {
			t.Fatal(err)
		}
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.CombinedOutput(tt.cmd)
		code := 0
		if ee, ok := err.(*ssh.ExitError); ok {
			code = ee.ExitStatus()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(string(out), tt.want) {
			t.Errorf("mode %d: %q exited %d with %q; want %d and %q", tt.mode, tt.cmd, code, out, tt.code, tt.want)
		}
		c.Close()
		s.Stop()
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
