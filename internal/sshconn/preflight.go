package sshconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SudoStatus classifies the outcome of `sudo -n true` on a node.
type SudoStatus int

const (
	SudoUnchecked     SudoStatus = iota // not checked (the connection failed)
	SudoOK                              // sudo works without a password
	SudoNeedsTTY                        // requiretty: set the node's PTY option
	SudoNeedsPassword                   // sudo wants a password: configure NOPASSWD
	SudoDenied                          // the user may not run sudo (or not this command)
	SudoMissing                         // no sudo on the node's PATH
	SudoFailed                          // anything else, including a timeout; see Detail
)

var sudoNames = [...]string{"unchecked", "ok", "needs-tty", "needs-password", "denied", "missing", "failed"}

func (s SudoStatus) String() string {
	if int(s) < len(sudoNames) {
		return sudoNames[s]
	}
	return fmt.Sprintf("SudoStatus(%d)", int(s))
}

// Preflight is the result of a node's pre-flight check.
type Preflight struct {
	Node string
	// Target is the resolved "user@host:port [via ...]".
	Target string
	// Reachable: the TCP connection (through the bastion, if any) opened.
	Reachable bool
	// HostKey is the fingerprint the node presented ("SHA256:...").
	HostKey string
	// HostKeyOK: the host key matched known_hosts (or was trusted on first
	// use).
	HostKeyOK bool
	// Authenticated: the server accepted one of our identities.
	Authenticated bool
	Sudo          SudoStatus
	// Detail is a short human explanation when something is not OK (sudo's
	// own message, or the connection error).
	Detail string
	// Err is the typed error of a failed connection (*HostKeyMismatchError,
	// *UnknownHostError, *AuthError, *TimeoutError, ...), or nil.
	Err      error
	Duration time.Duration
}

// OK reports whether the node is ready for mutating commands.
func (p Preflight) OK() bool {
	return p.Reachable && p.HostKeyOK && p.Authenticated && p.Sudo == SudoOK
}

func (p Preflight) String() string {
	if p.OK() {
		return fmt.Sprintf("%s: ok (%s, host key %s)", p.Node, p.Target, p.HostKey)
	}
	return fmt.Sprintf("%s: reachable=%t host_key_ok=%t authenticated=%t sudo=%s: %s",
		p.Node, p.Reachable, p.HostKeyOK, p.Authenticated, p.Sudo, p.Detail)
}

// Preflight connects to the node (or reuses the pool's connection), which
// checks the host key, then runs `sudo -n -- true` with a
// PreflightSudoTimeout limit (using a PTY only if cfg.PTY) and classifies
// the result. It never prompts and never waits for a password. It runs no
// mutating command, so it is safe in dry-run.
func (p *Pool) Preflight(ctx context.Context, cfg Config) Preflight {
	start := time.Now()
	pf := Preflight{Node: cfg.Node}
	defer func() { pf.Duration = time.Since(start) }()
	t, err := p.Resolve(cfg)
	if err != nil {
		pf.Err, pf.Detail = err, err.Error()
		return pf
	}
	pf.Node, pf.Target = t.Node, t.String()
	c, st, err := p.client(ctx, t)
	if st != nil {
		pf.Reachable = st.reachable
		pf.HostKey = fingerprint(st.hostKey)
		pf.HostKeyOK = st.hostKeyOK
	}
	if err != nil {
		pf.Err, pf.Detail = err, err.Error()
		var hm *HostKeyMismatchError
		var uh *UnknownHostError
		if errors.As(err, &hm) || errors.As(err, &uh) {
			pf.HostKeyOK = false
		}
		return pf
	}
	pf.Authenticated = true
	pf.Sudo, pf.Detail, pf.Err = c.checkSudo(ctx)
	return pf
}

func (c *Client) checkSudo(ctx context.Context) (SudoStatus, string, error) {
	res, err := c.Run(ctx, Command{Argv: []string{"true"}, Sudo: true, Timeout: PreflightSudoTimeout, MaxOutput: 4096})
	if err != nil {
		return SudoFailed, err.Error(), err
	}
	if res.ExitCode == 0 {
		return SudoOK, "", nil
	}
	out := strings.TrimSpace(string(res.Stderr) + "\n" + string(res.Stdout))
	st := ClassifySudo(res.ExitCode, out)
	return st, firstLine(out, res.ExitCode), nil
}

// ClassifySudo classifies the exit code and messages of a failed
// `sudo -n ...`, matching the messages of sudo 1.8 and 1.9.
func ClassifySudo(exitCode int, output string) SudoStatus {
	if exitCode == 0 {
		return SudoOK
	}
	o := strings.ToLower(output)
	switch {
	case strings.Contains(o, "password is required"),
		strings.Contains(o, "terminal is required") && strings.Contains(o, "password"),
		strings.Contains(o, "no tty present and no askpass"):
		return SudoNeedsPassword
	case strings.Contains(o, "must have a tty"), strings.Contains(o, "terminal is required"):
		return SudoNeedsTTY
	case strings.Contains(o, "is not allowed"), strings.Contains(o, "not in the sudoers"),
		strings.Contains(o, "may not run sudo"), strings.Contains(o, "not allowed to execute"):
		return SudoDenied
	case exitCode == 127, strings.Contains(o, "sudo: command not found"), strings.Contains(o, "sudo: not found"):
		return SudoMissing
	}
	return SudoFailed
}

func firstLine(s string, code int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	if s == "" {
		s = fmt.Sprintf("sudo -n true exited %d", code)
	}
	return s
}
