package sshconn_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/runbookhq/runbook/internal/sshconn"
)

// hostile are strings that must arrive verbatim as single arguments.
var hostile = []string{
	"plain",
	"",
	"with space",
	"  leading and trailing  ",
	"it's",
	`"double"`,
	`a'b"c'd`,
	"'",
	"''",
	`\`,
	`back\slash\n`,
	"semi;colon; rm -rf /nonexistent-runbook-test",
	"$(echo INJECTED)",
	"`echo INJECTED`",
	"${HOME}",
	"$HOME",
	"new\nline",
	"trailing newline\n",
	"\n",
	"tab\there",
	"*",
	"?",
	"[a-z]",
	"~",
	"~root",
	"-n",
	"--",
	"-e",
	"!bang",
	"#hash",
	"&& echo INJECTED",
	"| cat",
	"> /tmp/runbook-should-not-exist",
	"FOO=bar",
	"=",
	"%s %d",
	"node-1.example.com",
	"1.28.0-1.1",
	"/etc/kubernetes/admin.conf",
	"unicode ✓ ünï",
	"\x01\x02ctrl\x7f",
	"\xff\xfe not utf-8",
	"{a,b}",
	"(subshell)",
	"a\\'b",
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "abc"},
		{"1.28.0-1.1", "1.28.0-1.1"},
		{"/etc/kubernetes/admin.conf", "/etc/kubernetes/admin.conf"},
		{"user@host:22", "user@host:22"},
		{"with space", "'with space'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"$(id)", "'$(id)'"},
		{"a\nb", "'a\nb'"},
		{"FOO=bar", "'FOO=bar'"},
		{"~", "'~'"},
		{"*", "'*'"},
	}
	for _, tt := range tests {
		if got := sshconn.Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestShellJoinLocalShell checks the quoting against the local /bin/sh,
// without sshd.
func TestShellJoinLocalShell(t *testing.T) {
	line := "printf '%s\\0' " + sshconn.ShellJoin(hostile)
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	checkNulSeparated(t, out, hostile)
}

func checkNulSeparated(t *testing.T, out []byte, want []string) {
	t.Helper()
	got := strings.Split(string(out), "\x00")
	if len(got) == 0 || got[len(got)-1] != "" {
		t.Fatalf("output not NUL-terminated: %q", out)
	}
	got = got[:len(got)-1]
	if len(got) != len(want) {
		t.Fatalf("got %d args, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal([]byte(got[i]), []byte(want[i])) {
			t.Errorf("arg %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		name string
		cmd  sshconn.Command
		want string
		err  bool
	}{
		{"argv", sshconn.Command{Argv: []string{"kubeadm", "upgrade", "apply", "v1.28.3"}}, "kubeadm upgrade apply v1.28.3", false},
		{"argv quoted", sshconn.Command{Argv: []string{"echo", "a b", "it's"}}, `echo 'a b' 'it'\''s'`, false},
		{"sudo argv", sshconn.Command{Argv: []string{"apt-mark", "hold", "kubeadm"}, Sudo: true}, "sudo -n -- apt-mark hold kubeadm", false},
		{"script", sshconn.Command{Script: "echo $HOME; id"}, `sh -c 'echo $HOME; id'`, false},
		{"sudo script", sshconn.Command{Script: "cd /tmp && ls", Sudo: true}, `sudo -n -- sh -c 'cd /tmp && ls'`, false},
		{"both", sshconn.Command{Argv: []string{"x"}, Script: "y"}, "", true},
		{"neither", sshconn.Command{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cmd.Line()
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Line() = %q, want %q", got, tt.want)
			}
		})
	}
	if s := (sshconn.Command{Argv: []string{"echo", "secret"}, Label: "echo (redacted)"}).String(); s != "echo (redacted)" {
		t.Errorf("String() with Label = %q", s)
	}
}
