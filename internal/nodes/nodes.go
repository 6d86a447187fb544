// Package nodes connects the engine to nodes over SSH: it turns a node's
// plan settings into an sshconn.Config, runs engine commands on it, and
// runs the connection pre-flight of every node before anything mutates
// (field case F08).
//
// It holds no maintenance logic; the step kinds decide what to run.
package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/sshconn"
	"github.com/runbookhq/runbook/plans"
)

// Dialer opens one SSH connection per node per run.
type Dialer struct {
	Pool *sshconn.Pool
}

// New returns a dialer logging to log (nil: discard).
func New(log *slog.Logger, onTrust func(sshconn.TrustEvent)) *Dialer {
	if log == nil {
		// The transport's own log is for debugging; what matters reaches
		// the user as errors and events.
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if lv := os.Getenv("RUNBOOK_SSH_LOG"); lv != "" {
			var level slog.Level
			_ = level.UnmarshalText([]byte(lv))
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		}
	}
	opts := []sshconn.Option{sshconn.WithLogger(log)}
	if onTrust != nil {
		opts = append(opts, sshconn.WithTrustCallback(onTrust))
	}
	return &Dialer{Pool: sshconn.NewPool(opts...)}
}

// Close closes every connection.
func (d *Dialer) Close() error { return d.Pool.Close() }

// Config maps a node's plan settings to the transport's.
func Config(n *plans.Node) sshconn.Config {
	s := n.SSH
	c := sshconn.Config{
		Node: n.Name, Address: n.Address, User: s.User, Port: s.Port,
		IdentityFiles: expandAll(s.IdentityFiles), KnownHostsFiles: expandAll(s.KnownHosts),
		ProxyJump: s.Bastion, PTY: s.PTY, ConnectTimeout: s.ConnectTimeout,
		CommandTimeout: s.CommandTimeout, TrustOnFirstUse: s.TrustOnFirstUse,
	}
	if s.SSHConfig != "" {
		c.SSHConfigFiles = []string{expand(s.SSHConfig)}
	}
	// A node reached by its name (inventory address = "name", or a static
	// node without an address) is an ssh_config Host alias: let HostName
	// there say where it is.
	if n.Address == n.Name {
		c.Address = ""
	}
	return c
}

func expandAll(ps []string) []string {
	var out []string
	for _, p := range ps {
		if p != "" {
			out = append(out, expand(p))
		}
	}
	return out
}

// expand resolves a leading ~/ as OpenSSH does.
func expand(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// Runner returns an engine.Runner for the node.
func (d *Dialer) Runner(ctx context.Context, n *plans.Node) (engine.Runner, error) {
	c, err := d.Pool.Client(ctx, Config(n))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", n.Name, err)
	}
	return runner{c}, nil
}

type runner struct{ c *sshconn.Client }

// Run implements engine.Runner. The transport builds the same command line
// the dry-run printed (both quote with package shellquote).
func (r runner) Run(ctx context.Context, cmd engine.Command) (*engine.Result, error) {
	sc := sshconn.Command{Argv: cmd.Argv, Script: cmd.Script, Sudo: cmd.Sudo, Timeout: cmd.Timeout, OnLine: cmd.OnLine, Stdout: cmd.Stdout}
	if cmd.Stdin != nil {
		sc.Stdin = bytes.NewReader(cmd.Stdin)
	}
	res, err := r.c.Run(ctx, sc)
	if err != nil {
		if errors.Is(err, sshconn.ErrInDoubt) {
			// The command may have run: the engine treats the step as in
			// doubt and probes before redoing it.
			return nil, fmt.Errorf("%w: %w", engine.ErrInDoubt, err)
		}
		return nil, err
	}
	return &engine.Result{ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr), Truncated: res.Truncated, Duration: res.Duration}, nil
}

// Preflight checks every node once, in parallel (bounded): reachable, host
// key as known_hosts says, and `sudo -n true`. Results are sorted by node.
func (d *Dialer) Preflight(ctx context.Context, ns []plans.Node, needSudo bool) []sshconn.Preflight {
	out := make([]sshconn.Preflight, len(ns))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range ns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = d.Pool.Preflight(ctx, Config(&ns[i]))
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return plans.NaturalLess(out[i].Node, out[j].Node) })
	return out
}

// Problem describes what a failed pre-flight means for the plan; "" when
// the node is fine.
func Problem(pf sshconn.Preflight, needSudo bool) string {
	var mm *sshconn.HostKeyMismatchError
	var uh *sshconn.UnknownHostError
	switch {
	case errors.As(pf.Err, &mm), errors.As(pf.Err, &uh):
		return pf.Err.Error()
	case pf.Err != nil:
		return fmt.Sprintf("%s: %v", pf.Target, pf.Err)
	case needSudo && pf.Sudo != sshconn.SudoOK:
		return fmt.Sprintf("sudo -n true on %s: %s (%s)", pf.Node, pf.Sudo, pf.Detail)
	}
	return ""
}
