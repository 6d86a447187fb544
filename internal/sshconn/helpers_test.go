package sshconn_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/internal/sshconn/sshtest"
)

// logBuffer collects slog output (Debug and up) for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newPool returns a pool that reads no ~/.ssh/config and no ssh-agent, and
// logs at Debug level into the returned buffer. It is closed at test end.
func newPool(t testing.TB, opts ...sshconn.Option) (*sshconn.Pool, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	base := []sshconn.Option{sshconn.WithUserSSHConfig(""), sshconn.WithAgentSocket(""), sshconn.WithLogger(logger)}
	p := sshconn.NewPool(append(base, opts...)...)
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("pool log:\n%s", lb.String())
		}
	})
	return p, lb
}

// writeKnownHosts writes lines to a new known_hosts file.
func writeKnownHosts(t testing.TB, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	data := strings.Join(lines, "\n")
	if len(lines) > 0 {
		data += "\n"
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// nodeConfig describes s as node name with a known_hosts file that trusts it.
func nodeConfig(t testing.TB, name string, s *sshtest.Server, knownHosts string) sshconn.Config {
	t.Helper()
	if knownHosts == "" {
		knownHosts = writeKnownHosts(t, s.KnownHostsLine())
	}
	return sshconn.Config{
		Node:            name,
		Address:         s.Host,
		Port:            s.Port,
		User:            s.User,
		IdentityFiles:   []string{s.ClientKeyFile},
		KnownHostsFiles: []string{knownHosts},
		ConnectTimeout:  5 * time.Second,
	}
}

// ctxFor returns a context bounded by d (every wait in these tests is).
func ctxFor(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// connect starts a server with opts and returns a connected client.
func connect(t *testing.T, opts sshtest.Options, mutate func(*sshconn.Config)) (*sshtest.Server, *sshconn.Client, *logBuffer) {
	t.Helper()
	s := sshtest.Start(t, opts)
	p, lb := newPool(t)
	cfg := nodeConfig(t, "n1", s, "")
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := p.Client(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s, c, lb
}
