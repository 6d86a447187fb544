package sshconn_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

func TestRunResults(t *testing.T) {
	_, c, _ := connect(t, sshtest.Options{}, nil)
	tests := []struct {
		name       string
		cmd        sshconn.Command
		wantCode   int
		wantSignal string
		wantOut    string
		wantErr    string
	}{
		{"success", sshconn.Command{Argv: []string{"echo", "hello"}}, 0, "", "hello\n", ""},
		{"non-zero exit is a result", sshconn.Command{Script: "echo out; echo err >&2; exit 3"}, 3, "", "out\n", "err\n"},
		{"command not found", sshconn.Command{Argv: []string{"runbook-no-such-command"}}, 127, "", "", "not found"},
		{"signal", sshconn.Command{Script: "kill -TERM $$"}, -1, "TERM", "", ""},
		{"stdin then EOF", sshconn.Command{Argv: []string{"cat"}, Stdin: strings.NewReader("in\x00put\n")}, 0, "", "in\x00put\n", ""},
		{"no stdin reads EOF", sshconn.Command{Argv: []string{"cat"}}, 0, "", "", ""},
		{"sudo", sshconn.Command{Argv: []string{"echo", "as root"}, Sudo: true}, 0, "", "as root\n", ""},
		{"sudo script", sshconn.Command{Script: "echo a; echo b", Sudo: true}, 0, "", "a\nb\n", ""},
		{"no pty by default", sshconn.Command{Argv: []string{"tty"}}, 1, "", "not a tty\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Run(ctxFor(t, 10*time.Second), tt.cmd)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.ExitCode != tt.wantCode || res.Signal != tt.wantSignal {
				t.Errorf("exit %d signal %q, want %d %q", res.ExitCode, res.Signal, tt.wantCode, tt.wantSignal)
			}
			if string(res.Stdout) != tt.wantOut {
				t.Errorf("stdout %q, want %q", res.Stdout, tt.wantOut)
			}
			if !strings.Contains(string(res.Stderr), tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", res.Stderr, tt.wantErr)
			}
		})
	}
}

// TestQuotingEndToEnd sends hostile strings through the real sshd and the
// remote login shell, as argv, through sudo, and inside a script, and
// compares the bytes printed remotely by printf '%s\0'.
func TestQuotingEndToEnd(t *testing.T) {
	s, c, _ := connect(t, sshtest.Options{}, nil)
	canary := filepath.Join(s.Dir, "pwned")
	args := append([]string{}, hostile...)
	args = append(args, "$(touch "+canary+")", "; touch "+canary, "`touch "+canary+"`", "\ntouch "+canary+"\n")
	printf := []string{"printf", `%s\0`}
	tests := []struct {
		name string
		cmd  sshconn.Command
	}{
		{"argv", sshconn.Command{Argv: append(printf, args...)}},
		{"argv via sudo", sshconn.Command{Argv: append(printf, args...), Sudo: true}},
		{"script", sshconn.Command{Script: "set -e\n" + sshconn.ShellJoin(append(printf, args...)) + "\n"}},
		{"script via sudo", sshconn.Command{Script: sshconn.ShellJoin(append(printf, args...)), Sudo: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Run(ctxFor(t, 10*time.Second), tt.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != 0 {
				t.Fatalf("exit %d: %s", res.ExitCode, res.Stderr)
			}
			checkNulSeparated(t, res.Stdout, args)
			if _, err := os.Stat(canary); err == nil {
				t.Fatal("an argument was executed by the remote shell")
			}
		})
	}
	// Binary stdin arrives intact.
	blob := make([]byte, 256*3)
	for i := range blob {
		blob[i] = byte(i)
	}
	res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"cat"}, Stdin: bytes.NewReader(blob)})
	if err != nil || !bytes.Equal(res.Stdout, blob) {
		t.Fatalf("stdin round trip: err %v, %d bytes", err, len(res.Stdout))
	}
}

func TestOutputCapAndStreaming(t *testing.T) {
	_, c, _ := connect(t, sshtest.Options{}, nil)
	type line struct{ stream, text string }
	t.Run("cap and lines", func(t *testing.T) {
		var lines []line
		res, err := c.Run(ctxFor(t, 20*time.Second), sshconn.Command{
			Script:    `i=0; while [ $i -lt 2000 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done; printf 'no newline'`,
			MaxOutput: 100,
			OnLine:    func(stream, l string) { lines = append(lines, line{stream, l}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Stdout) != 100 || len(res.Stderr) != 100 || !res.Truncated {
			t.Errorf("kept %d/%d bytes, truncated=%t; want 100/100, true", len(res.Stdout), len(res.Stderr), res.Truncated)
		}
		if !strings.HasPrefix(string(res.Stdout), "out 0\nout 1\n") || !strings.HasPrefix(string(res.Stderr), "err 0\nerr 1\n") {
			t.Errorf("streams mixed: %q / %q", res.Stdout[:20], res.Stderr[:20])
		}
		var out, errs []string
		for _, l := range lines {
			if l.stream == sshconn.Stdout {
				out = append(out, l.text)
			} else {
				errs = append(errs, l.text)
			}
		}
		if len(out) != 2001 || len(errs) != 2000 {
			t.Fatalf("streamed %d stdout and %d stderr lines, want 2001 and 2000", len(out), len(errs))
		}
		for i := 0; i < 2000; i++ {
			if out[i] != fmt.Sprintf("out %d", i) || errs[i] != fmt.Sprintf("err %d", i) {
				t.Fatalf("line %d: %q / %q", i, out[i], errs[i])
			}
		}
		if out[2000] != "no newline" {
			t.Errorf("last partial line = %q", out[2000])
		}
	})
	t.Run("under the cap", func(t *testing.T) {
		res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"echo", "short"}, MaxOutput: 100})
		if err != nil || res.Truncated || string(res.Stdout) != "short\n" {
			t.Errorf("res %+v err %v", res, err)
		}
	})
	t.Run("very long line is split", func(t *testing.T) {
		var got []int
		res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{
			Script: `head -c 200000 /dev/zero | tr '\0' a; echo; echo end`,
			OnLine: func(_, l string) { got = append(got, len(l)) },
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []int{65536, 65536, 65536, 200000 - 3*65536, 3}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(res.Stdout) != 200005 {
			t.Errorf("line lengths %v, want %v; kept %d", got, want, len(res.Stdout))
		}
	})
	t.Run("keep nothing, stream only", func(t *testing.T) {
		n := 0
		res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"seq", "1", "500"}, MaxOutput: -1,
			OnLine: func(string, string) { n++ }})
		if err != nil || len(res.Stdout) != 0 || !res.Truncated || n != 500 {
			t.Errorf("kept %d bytes, truncated=%t, %d lines, err %v", len(res.Stdout), res.Truncated, n, err)
		}
	})
}

// remoteProcessGone waits up to d for no process to have marker in its
// command line (sshd runs on this machine).
func remoteProcessGone(marker string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		found := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && bytes.Contains(b, []byte(marker)) {
				found = true
				break
			}
		}
		if !found {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func TestCommandTimeoutAndCancel(t *testing.T) {
	_, c, logs := connect(t, sshtest.Options{}, nil)
	t.Run("timeout", func(t *testing.T) {
		marker := "3601.4242"
		start := time.Now()
		res, err := c.Run(ctxFor(t, 20*time.Second), sshconn.Command{Argv: []string{"sleep", marker}, Timeout: 500 * time.Millisecond})
		elapsed := time.Since(start)
		var te *sshconn.TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("err = %v (%T), want *TimeoutError", err, err)
		}
		if elapsed > 3*time.Second {
			t.Errorf("returned after %s, want promptly after the 500ms timeout", elapsed)
		}
		if te.Command != "sleep "+marker || !strings.Contains(err.Error(), "sleep "+marker) || te.Node != "n1" {
			t.Errorf("error does not name the command: %v", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, sshconn.ErrInDoubt) {
			t.Errorf("errors.Is(DeadlineExceeded / ErrInDoubt) false for %v", err)
		}
		if res == nil {
			t.Error("no partial result")
		}
		if !remoteProcessGone(marker, 5*time.Second) {
			t.Error("remote command still running after the timeout")
		}
	})
	t.Run("node default CommandTimeout", func(t *testing.T) {
		_, c2, _ := connect(t, sshtest.Options{}, func(cfg *sshconn.Config) { cfg.CommandTimeout = 300 * time.Millisecond })
		start := time.Now()
		_, err := c2.Run(ctxFor(t, 20*time.Second), sshconn.Command{Argv: []string{"sleep", "30"}})
		if !errors.As(err, new(*sshconn.TimeoutError)) || time.Since(start) > 3*time.Second {
			t.Errorf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		marker := "3602.4242"
		ctx, cancel := context.WithCancel(ctxFor(t, 20*time.Second))
		started := make(chan struct{})
		var once sync.Once
		go func() {
			select {
			case <-started:
			case <-time.After(5 * time.Second):
			}
			cancel()
		}()
		start := time.Now()
		res, err := c.Run(ctx, sshconn.Command{Script: "echo started; exec sleep " + marker,
			OnLine: func(_, l string) { once.Do(func() { close(started) }) }})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if time.Since(start) > 8*time.Second {
			t.Errorf("took %s", time.Since(start))
		}
		if res == nil || string(res.Stdout) != "started\n" {
			t.Errorf("partial result %+v", res)
		}
		if !remoteProcessGone(marker, 5*time.Second) {
			t.Error("remote command still running after cancel")
		}
	})
	t.Run("connection still usable", func(t *testing.T) {
		res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"true"}})
		if err != nil || res.ExitCode != 0 {
			t.Errorf("res %+v err %v", res, err)
		}
	})
	if !strings.Contains(logs.String(), "command stopped") {
		t.Error("stop not logged")
	}
}

func TestConnectionDroppedMidCommand(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	pool, _ := newPool(t)
	cfg := nodeConfig(t, "n1", s, "")
	c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-started:
			s.KillConnections()
		case <-time.After(10 * time.Second):
		}
	}()
	start := time.Now()
	res, err := c.Run(ctxFor(t, 20*time.Second), sshconn.Command{Script: "echo started; sleep 30; echo done",
		OnLine: func(_, l string) { once.Do(func() { close(started) }) }})
	var le *sshconn.ConnectionLostError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v (%T), want *ConnectionLostError", err, err)
	}
	if !le.Started || !errors.Is(err, sshconn.ErrConnectionLost) || !errors.Is(err, sshconn.ErrInDoubt) {
		t.Errorf("lost error %+v: Started/Is wrong", le)
	}
	if !strings.Contains(err.Error(), "may or may not have completed") {
		t.Errorf("message: %v", err)
	}
	if time.Since(start) > 8*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	if res == nil || string(res.Stdout) != "started\n" {
		t.Errorf("partial result %+v", res)
	}

	// A new command on the dead client fails as "not started".
	_, err = c.Run(ctxFor(t, 5*time.Second), sshconn.Command{Argv: []string{"true"}})
	if !errors.As(err, &le) || le.Started || errors.Is(err, sshconn.ErrInDoubt) {
		t.Errorf("run on lost client: %v", err)
	}
	// The pool reconnects.
	c2, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c {
		t.Error("pool returned the lost client")
	}
	if res, err := c2.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"echo", "back"}}); err != nil || string(res.Stdout) != "back\n" {
		t.Errorf("after reconnect: %v", err)
	}
}

// TestKeepaliveDetectsHungHost: the server stops answering without closing
// TCP (SIGSTOP); keepalives declare the connection lost.
func TestKeepaliveDetectsHungHost(t *testing.T) {
	s, c, logs := connect(t, sshtest.Options{}, func(cfg *sshconn.Config) {
		cfg.KeepaliveInterval = 200 * time.Millisecond
		cfg.KeepaliveMaxMissed = 3
	})
	started := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-started:
			resume := s.SuspendConnections()
			t.Cleanup(resume)
		case <-time.After(10 * time.Second):
		}
	}()
	start := time.Now()
	_, err := c.Run(ctxFor(t, 20*time.Second), sshconn.Command{Script: "echo started; sleep 30",
		OnLine: func(_, l string) { once.Do(func() { close(started) }) }})
	var le *sshconn.ConnectionLostError
	if !errors.As(err, &le) || !le.Started {
		t.Fatalf("err = %v (%T), want *ConnectionLostError with Started", err, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("detected after %s", d)
	}
	if !strings.Contains(err.Error(), "keepalive") || !strings.Contains(logs.String(), "ssh connection lost") {
		t.Errorf("error/log do not mention keepalives: %v", err)
	}
}

func TestPTY(t *testing.T) {
	_, c, _ := connect(t, sshtest.Options{}, func(cfg *sshconn.Config) { cfg.PTY = true })
	res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Script: "tty; echo to-stderr >&2"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(res.Stdout), "/dev/pts/") || !strings.Contains(string(res.Stdout), "to-stderr\n") {
		t.Errorf("stdout %q: want a pts and merged stderr with plain newlines", res.Stdout)
	}
	// A hanging command under a PTY also stops on timeout.
	start := time.Now()
	_, err = c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"sleep", "3603.4242"}, Timeout: 300 * time.Millisecond})
	if !errors.As(err, new(*sshconn.TimeoutError)) || time.Since(start) > 3*time.Second {
		t.Errorf("err %v after %s", err, time.Since(start))
	}
	if !remoteProcessGone("3603.4242", 5*time.Second) {
		t.Error("remote command still running")
	}
}

func TestPoolReusesConnection(t *testing.T) {
	s := sshtest.Start(t, sshtest.Options{})
	pool, _ := newPool(t)
	cfg := nodeConfig(t, "n1", s, "")
	var wg sync.WaitGroup
	clients := make([]*sshconn.Client, 8)
	errs := make([]error, 8)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = pool.Client(ctxFor(t, 10*time.Second), cfg)
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] != nil || clients[i] != clients[0] {
			t.Fatalf("client %d: %v (same=%t)", i, errs[i], clients[i] == clients[0])
		}
	}
	// Many concurrent commands share the one connection.
	results := make([]string, 30)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := clients[0].Run(ctxFor(t, 20*time.Second), sshconn.Command{Argv: []string{"echo", fmt.Sprint(i)}})
			if err != nil {
				results[i] = err.Error()
				return
			}
			results[i] = strings.TrimSpace(string(res.Stdout))
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != fmt.Sprint(i) {
			t.Errorf("command %d: %s", i, r)
		}
	}
	if n := strings.Count(s.Log(), "Accepted publickey"); n != 1 {
		t.Errorf("sshd accepted %d logins, want 1", n)
	}
}

func TestAgentAuthentication(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := sshtest.NewKey(t, dir, "agent_key")
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); agent.ServeAgent(keyring, conn) }()
		}
	}()
	signer, _ := ssh.NewSignerFromKey(priv)
	s := sshtest.Start(t, sshtest.Options{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})

	pool, _ := newPool(t, sshconn.WithAgentSocket(sock))
	cfg := nodeConfig(t, "n1", s, "")
	cfg.IdentityFiles = []string{filepath.Join(dir, "does-not-exist")}
	c, err := pool.Client(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("agent auth: %v", err)
	}
	if res, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"true"}}); err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %v", err)
	}

	// Without the agent the server refuses us: a typed AuthError.
	pool2, _ := newPool(t)
	_, err = pool2.Client(ctxFor(t, 10*time.Second), nodeConfig(t, "n1", s, ""))
	var ae *sshconn.AuthError
	if !errors.As(err, &ae) || len(ae.Tried) != 1 {
		t.Fatalf("err = %v, want *AuthError with one key tried", err)
	}
}

// TestNoSecretsInLogs runs commands whose command line and output contain
// secrets and checks the Debug-level log for them and for key material.
func TestNoSecretsInLogs(t *testing.T) {
	s, c, logs := connect(t, sshtest.Options{}, nil)
	_, err := c.Run(ctxFor(t, 10*time.Second), sshconn.Command{
		Script: "echo OUTPUT-SECRET-1; echo OUTPUT-SECRET-2 >&2",
		Label:  "print secrets",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"sleep", "5"}, Label: "etcdctl --password=(redacted)", Timeout: 100 * time.Millisecond})
	_, _ = c.Run(ctxFor(t, 10*time.Second), sshconn.Command{Argv: []string{"sh", "-c", "echo ARG-SECRET"}, Label: "redacted", Stdin: strings.NewReader("STDIN-SECRET")})
	log := logs.String()
	if !strings.Contains(log, "print secrets") {
		t.Fatalf("expected debug log of the command label, got:\n%s", log)
	}
	for _, secret := range []string{"OUTPUT-SECRET", "ARG-SECRET", "STDIN-SECRET", "BEGIN OPENSSH PRIVATE KEY"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains %q:\n%s", secret, log)
		}
	}
	keyPEM, _ := os.ReadFile(s.ClientKeyFile)
	for _, l := range strings.Split(string(keyPEM), "\n") {
		if len(l) > 20 && !strings.HasPrefix(l, "-----") && strings.Contains(log, l) {
			t.Errorf("log contains private key material")
		}
	}
}

func TestConnectErrors(t *testing.T) {
	pool, _ := newPool(t)
	t.Run("refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		start := time.Now()
		_, err := pool.Client(ctxFor(t, 10*time.Second), sshconn.Config{Node: "dead", Address: "127.0.0.1", Port: port, KnownHostsFiles: []string{writeKnownHosts(t)}})
		if err == nil || !strings.Contains(err.Error(), "connection refused") || time.Since(start) > 3*time.Second {
			t.Errorf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("connect timeout", func(t *testing.T) {
		// A listener that never speaks SSH.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		start := time.Now()
		_, err = pool.Client(ctxFor(t, 10*time.Second), sshconn.Config{Node: "mute", Address: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
			KnownHostsFiles: []string{writeKnownHosts(t)}, ConnectTimeout: 400 * time.Millisecond})
		var te *sshconn.TimeoutError
		if !errors.As(err, &te) || te.Op != "connect" || time.Since(start) > 3*time.Second {
			t.Errorf("err %v (%T) after %s", err, err, time.Since(start))
		}
	})
}
