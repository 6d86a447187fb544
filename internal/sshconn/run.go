package sshconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Stream names passed to Command.OnLine.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// maxLine is the longest line handed to OnLine; longer lines are split.
const maxLine = 64 << 10

// stopGrace bounds how long Run waits for a stopped or dropped session to wind
// down before returning.
const stopGrace = 2 * time.Second

// Command is one remote command. Exactly one of Argv and Script is set.
type Command struct {
	// Argv is run as exactly these words: each element is quoted (Quote),
	// so spaces, quotes, `;`, `$(...)` and newlines arrive verbatim.
	// Argv[0] must be a program on the remote PATH (it is exec'd), not a
	// shell builtin or function; use Script for shell syntax.
	Argv []string
	// Script is a POSIX shell script run as `sh -c <quoted script>`.
	Script string
	// Sudo runs the command as `sudo -n -- ...`: never interactive, a sudo
	// that wants a password fails at once instead of waiting.
	Sudo bool
	// Stdin, if set, is copied to the command's standard input, then EOF.
	// Without it the command reads EOF at once. Run waits for Stdin to
	// reach EOF (or for the timeout), so pass a reader that ends.
	Stdin io.Reader
	// Stdout, if set, receives the command's standard output as it is,
	// byte for byte (a file being copied off the node); it is then neither
	// captured nor streamed to OnLine. Not allowed on a PTY, which would
	// rewrite the bytes.
	Stdout io.Writer
	// Timeout overrides the node's CommandTimeout (0: use it; negative: none).
	Timeout time.Duration
	// MaxOutput is the number of bytes kept per stream (0: DefaultMaxOutput;
	// negative: keep nothing, stream only). Output past it is still read
	// and streamed, but Result.Truncated is set.
	MaxOutput int
	// OnLine, if set, receives each output line (without its line ending) as
	// it arrives, with Stdout or Stderr. Calls are serialised.
	OnLine func(stream, line string)
	// Label replaces the command text in logs and errors; set it when the
	// command line contains a secret.
	Label string
}

// Line returns the command line for the remote login shell, as shown in
// dry-run output. Run sends it as `printf <pid report> >&2; exec <Line>`:
// the report (one line with a per-command random marker, removed from the
// output) lets Run kill the command's process group when it times out.
func (cmd Command) Line() (string, error) {
	var line string
	switch {
	case len(cmd.Argv) > 0 && cmd.Script != "":
		return "", errors.New("sshconn: Command has both Argv and Script")
	case len(cmd.Argv) > 0:
		line = ShellJoin(cmd.Argv)
	case cmd.Script != "":
		line = "sh -c " + Quote(cmd.Script)
	default:
		return "", errors.New("sshconn: Command has neither Argv nor Script")
	}
	if cmd.Sudo {
		line = "sudo -n -- " + line
	}
	return line, nil
}

// String returns the display form of the command: Label, or the command
// line shortened to 200 bytes.
func (cmd Command) String() string {
	if cmd.Label != "" {
		return cmd.Label
	}
	line, err := cmd.Line()
	if err != nil {
		return "(invalid command)"
	}
	if len(line) > 200 {
		line = line[:197] + "..."
	}
	return line
}

// Result is the outcome of a command that ran to its end. A non-zero exit is
// a Result, not an error.
type Result struct {
	// ExitCode is the exit status, or -1 when the command was killed by a
	// signal.
	ExitCode int
	// Signal is the signal name without "SIG" (e.g. "TERM"), if any.
	Signal string
	Stdout []byte
	Stderr []byte
	// Truncated is set when either stream produced more than MaxOutput.
	Truncated bool
	Duration  time.Duration
}

// Run runs cmd in a new session on the connection. It returns an error only
// when the command could not be run to its end: *TimeoutError, a
// cancellation (wrapping ctx.Err()), *ConnectionLostError (with Started set:
// the outcome is in doubt), or a failure to open the session. When the
// command was started, the Result holds the output captured so far even if
// err != nil. On timeout or cancellation the remote command's process group
// is sent SIGTERM (as an SSH "signal" request and, because OpenSSH ignores
// those on root logins, by `kill` from a second session, with sudo for a
// sudo command), then SIGKILL after a second if it is still running, and its
// session is closed (with a PTY it also gets SIGHUP; without one, EOF on
// stdin). Run returns within a few seconds of the deadline whatever the
// node does.
func (c *Client) Run(ctx context.Context, cmd Command) (*Result, error) {
	line, err := cmd.Line()
	if err != nil {
		return nil, err
	}
	label := cmd.String()
	if cmd.Stdout != nil && c.target.PTY {
		return nil, fmt.Errorf("node %s: %q: copying output byte for byte needs a session without a PTY (the node's pty setting)", c.target.Node, label)
	}
	timeout := cmd.Timeout
	if timeout == 0 {
		timeout = c.target.CommandTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stopErr := func() error {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &TimeoutError{Node: c.target.Node, Op: "command", Command: label, Timeout: timeout}
		}
		return fmt.Errorf("node %s: command %q: %w", c.target.Node, label, ctx.Err())
	}
	lostErr := func(started bool) error {
		return &ConnectionLostError{Node: c.target.Node, Command: label, Started: started, Err: c.lostErr}
	}

	if c.isLost() {
		return nil, lostErr(false)
	}
	select {
	case c.sessions <- struct{}{}:
	case <-ctx.Done():
		return nil, stopErr()
	case <-c.lost:
		return nil, lostErr(false)
	}
	defer func() { <-c.sessions }()

	sess, err := c.conn.NewSession()
	if err != nil {
		if c.waitLost(100 * time.Millisecond) {
			return nil, lostErr(false)
		}
		return nil, fmt.Errorf("node %s: open session: %w", c.target.Node, err)
	}
	defer sess.Close()
	if c.target.PTY {
		modes := ssh.TerminalModes{ssh.ECHO: 0, ssh.ONLCR: 0, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
		if err := sess.RequestPty("xterm", 40, 200, modes); err != nil {
			if c.waitLost(100 * time.Millisecond) {
				return nil, lostErr(false)
			}
			return nil, fmt.Errorf("node %s: request pty: %w", c.target.Node, err)
		}
	}

	maxOut := cmd.MaxOutput
	if maxOut == 0 {
		maxOut = DefaultMaxOutput
	}
	var emitMu sync.Mutex
	var emit func(string, string)
	if cmd.OnLine != nil {
		emit = func(stream, l string) {
			emitMu.Lock()
			defer emitMu.Unlock()
			cmd.OnLine(stream, l)
		}
	}
	outW := &capture{stream: Stdout, max: maxOut, emit: emit}
	errW := &capture{stream: Stderr, max: maxOut, emit: emit}
	// The remote shell reports its PID (which exec hands to the command) on
	// stderr (stdout under a PTY) before running the command, so that a
	// timed-out or cancelled command can be killed by process group from a
	// second session: OpenSSH ignores "signal" requests on root logins.
	marker := newPIDMarker()
	pidW := errW
	if c.target.PTY {
		pidW = outW
	}
	pidW.expectMarker(marker)
	line = "printf '" + marker + "%s\\n' \"$$\" >&2; exec " + line
	sess.Stdout, sess.Stderr = outW, errW
	if cmd.Stdout != nil {
		sess.Stdout = cmd.Stdout
	}
	if cmd.Stdin != nil {
		sess.Stdin = cmd.Stdin
	}

	start := time.Now()
	c.log.Debug("run", "command", label, "sudo", cmd.Sudo, "pty", c.target.PTY)
	if err := sess.Start(line); err != nil {
		if c.waitLost(100 * time.Millisecond) {
			return nil, lostErr(false)
		}
		return nil, fmt.Errorf("node %s: start %q: %w", c.target.Node, label, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	result := func() *Result {
		outW.flush()
		errW.flush()
		return &Result{
			ExitCode:  -1,
			Stdout:    outW.bytes(),
			Stderr:    errW.bytes(),
			Truncated: outW.truncated || errW.truncated,
			Duration:  time.Since(start),
		}
	}

	var werr error
	finished := false
	select {
	case werr = <-done:
		finished = true
	case <-ctx.Done():
	case <-c.lost:
	}
	if !finished {
		// Prefer a result that arrived at the same moment.
		select {
		case werr = <-done:
			finished = true
		default:
		}
	}
	if !finished && ctx.Err() != nil {
		c.stop(sess, done, pidW.remotePID(stopGrace), cmd.Sudo)
		res := result()
		c.log.Warn("command stopped", "command", label, "reason", ctx.Err(), "duration", res.Duration.Round(time.Millisecond))
		return res, stopErr()
	}
	if !finished {
		// Keepalives gave up and the transport is being closed: wait
		// briefly for the session to notice; an exit status that arrived
		// before the drop still counts.
		select {
		case werr = <-done:
		case <-time.After(stopGrace):
			return result(), lostErr(true)
		}
	}

	res := result()
	var ee *ssh.ExitError
	switch {
	case werr == nil:
		res.ExitCode = 0
	case errors.As(werr, &ee):
		res.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" {
			res.ExitCode = -1
			res.Signal = strings.TrimPrefix(ee.Signal(), "SIG")
		}
	default:
		// No exit status: the channel or the connection went away.
		if c.waitLost(time.Second) {
			return res, lostErr(true)
		}
		return res, &ConnectionLostError{Node: c.target.Node, Command: label, Started: true,
			Err: fmt.Errorf("session ended without an exit status: %w", werr)}
	}
	c.log.Debug("command finished", "command", label, "exit_code", res.ExitCode, "signal", res.Signal,
		"stdout_bytes", len(res.Stdout), "stderr_bytes", len(res.Stderr), "duration", res.Duration.Round(time.Millisecond))
	return res, nil
}

// stop ends a running command: SIGTERM (as a "signal" request, and by
// process group from a second session when the PID is known), SIGKILL after
// a second, then the channel is closed. It returns within about 2*stopGrace.
func (c *Client) stop(sess *ssh.Session, done <-chan error, pid int, sudo bool) {
	wait := func(d time.Duration) bool {
		select {
		case <-done:
			return true
		case <-time.After(d):
			return false
		}
	}
	_ = sess.Signal(ssh.SIGTERM)
	if pid > 0 {
		c.killRemote(pid, "TERM", sudo)
	}
	if wait(time.Second) {
		return
	}
	_ = sess.Signal(ssh.SIGKILL)
	if pid > 0 {
		c.killRemote(pid, "KILL", sudo)
	}
	_ = sess.Close()
	wait(stopGrace)
}

// killRemote signals the process group (and the process) pid on the node.
func (c *Client) killRemote(pid int, sig string, sudo bool) {
	script := fmt.Sprintf("kill -s %s -- -%d 2>/dev/null || kill -s %s %d 2>/dev/null; true", sig, pid, sig, pid)
	line := script
	if sudo {
		line = "sudo -n -- sh -c " + Quote(script)
	}
	s, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Run(line) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
	}
}

// waitLost reports whether the connection is (or within d becomes) lost.
func (c *Client) waitLost(d time.Duration) bool {
	select {
	case <-c.lost:
		return true
	case <-time.After(d):
		return false
	}
}

// newPIDMarker returns a per-command marker that the command's own output
// cannot forge.
func newPIDMarker() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "runbook-pid:" + hex.EncodeToString(b[:]) + ":"
}

// maxPreMarker bounds how much output (e.g. from a chatty login script) may
// precede the PID marker line before we stop looking for it.
const maxPreMarker = 4096

// capture keeps up to max bytes of a stream and splits it into lines for
// emit. x/crypto writes each stream from its own goroutine; the mutex guards
// against reads of the result while a stopped command still writes.
type capture struct {
	stream    string
	max       int
	emit      func(stream, line string)
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
	partial   []byte
	done      bool // set by flush: no more OnLine calls after Run returns

	marker  string // PID marker still to be found ("" once found or given up)
	pre     []byte // bytes held while looking for the marker line
	skipped int    // bytes passed through before the marker
	pid     int
	// settled is closed once the marker is found or given up; nil when
	// this stream carries no marker.
	settled chan struct{}
}

// expectMarker makes w look for the PID marker line.
func (w *capture) expectMarker(marker string) {
	w.marker = marker
	w.settled = make(chan struct{})
}

// remotePID is the command's PID on the node, waiting up to d for the
// marker line: a command cancelled at once (its other stream's first line
// can arrive before this one's marker) must still be killed by its group.
func (w *capture) remotePID(d time.Duration) int {
	if w.settled != nil {
		select {
		case <-w.settled:
		case <-time.After(d):
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pid
}

// markerDone ends the search for the marker (w.mu held).
func (w *capture) markerDone() {
	w.marker = ""
	if w.settled != nil {
		select {
		case <-w.settled:
		default:
			close(w.settled)
		}
	}
}

func (w *capture) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.marker == "" {
		w.write(p)
		return len(p), nil
	}
	w.pre = append(w.pre, p...)
	for w.marker != "" {
		i := bytes.IndexByte(w.pre, '\n')
		if i < 0 {
			if w.skipped+len(w.pre) > maxPreMarker {
				w.giveUpMarker()
			}
			break
		}
		line := w.pre[:i]
		if rest, ok := bytes.CutPrefix(line, []byte(w.marker)); ok {
			w.pid, _ = strconv.Atoi(string(bytes.TrimSuffix(rest, []byte("\r"))))
			w.markerDone()
			rest := w.pre[i+1:]
			w.pre = nil
			w.write(rest)
			break
		}
		w.write(w.pre[:i+1])
		w.skipped += i + 1
		w.pre = w.pre[i+1:]
		if w.skipped > maxPreMarker {
			w.giveUpMarker()
		}
	}
	return len(p), nil
}

func (w *capture) giveUpMarker() {
	w.markerDone()
	pre := w.pre
	w.pre = nil
	w.write(pre)
}

// write keeps and streams data (w.mu held).
func (w *capture) write(p []byte) {
	if len(p) == 0 {
		return
	}
	if w.max > 0 {
		room := w.max - w.buf.Len()
		n := min(room, len(p))
		if n > 0 {
			w.buf.Write(p[:n])
		}
		if n < len(p) {
			w.truncated = true
		}
	} else if w.max < 0 {
		w.truncated = true
	}
	if w.emit == nil || w.done {
		return
	}
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			w.partial = append(w.partial, rest...)
			for len(w.partial) >= maxLine {
				w.emit(w.stream, string(w.partial[:maxLine]))
				w.partial = append(w.partial[:0], w.partial[maxLine:]...)
			}
			return
		}
		w.partial = append(w.partial, rest[:i]...)
		rest = rest[i+1:]
		l := bytes.TrimSuffix(w.partial, []byte("\r"))
		for len(l) > maxLine {
			w.emit(w.stream, string(l[:maxLine]))
			l = l[maxLine:]
		}
		w.emit(w.stream, string(l))
		w.partial = w.partial[:0]
	}
}

// flush hands over anything held back and emits a final line without a
// newline; no OnLine call happens after it.
func (w *capture) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.marker != "" {
		w.giveUpMarker()
	}
	if w.emit != nil && !w.done && len(w.partial) > 0 {
		w.emit(w.stream, string(bytes.TrimSuffix(w.partial, []byte("\r"))))
		w.partial = w.partial[:0]
	}
	w.done = true
}

func (w *capture) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}
