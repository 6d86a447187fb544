package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// procSpec says how to run one child.
type procSpec struct {
	Name    string // e.g. kube-apiserver; also the log file name
	Exe     string // program to run; empty: the runbook-lab binary
	Args    []string
	Env     []string // extra environment
	Hash    string   // manifest content hash; a change means restart
	Version string   // reported version, for status
}

// proc is one supervised child process, restarted with back-off when it
// exits on its own, like a kubelet restarts a static pod's container.
type proc struct {
	spec    procSpec
	exe     string
	logPath string
	log     *slog.Logger
	// grace is how long a stop waits after SIGTERM before SIGKILL. The
	// apiserver's graceful shutdown waits up to its request timeout (60s)
	// for open watch connections; a lab does not need that politeness.
	grace time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd
	pid      int
	started  time.Time
	restarts int

	cancel context.CancelFunc
	done   chan struct{}
}

// ProcStatus is what status reports per process (run/processes.json).
type ProcStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid"`
	Running  bool      `json:"running"`
	Started  time.Time `json:"started,omitzero"`
	Restarts int       `json:"restarts"`
	Version  string    `json:"version,omitempty"`
	Hash     string    `json:"hash,omitempty"`
}

func startProc(parent context.Context, exe, logPath string, spec procSpec, log *slog.Logger) *proc {
	ctx, cancel := context.WithCancel(parent)
	p := &proc{spec: spec, exe: exe, logPath: logPath, log: log.With("proc", spec.Name), grace: 5 * time.Second,
		cancel: cancel, done: make(chan struct{})}
	go p.loop(ctx)
	return p
}

func (p *proc) status() ProcStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProcStatus{Name: p.spec.Name, PID: p.pid, Running: p.cmd != nil, Started: p.started,
		Restarts: p.restarts, Version: p.spec.Version, Hash: p.spec.Hash}
}

func (p *proc) loop(ctx context.Context) {
	defer close(p.done)
	backoff := time.Second
	for {
		start := time.Now()
		err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 30*time.Second {
			backoff = time.Second
		}
		p.log.Warn("process exited; restarting", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// runOnce runs the child until it exits or ctx is cancelled; on cancel it
// sends SIGTERM, then SIGKILL after a grace period.
func (p *proc) runOnce(ctx context.Context) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== runbook-lab supervisor: starting %s at %s ====\n", p.spec.Name, time.Now().Format(time.RFC3339))
	exe := p.exe
	if p.spec.Exe != "" {
		exe = p.spec.Exe
	}
	cmd := exec.Command(exe, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	p.mu.Lock()
	p.cmd, p.pid, p.started = cmd, cmd.Process.Pid, time.Now()
	p.mu.Unlock()
	p.log.Info("started", "pid", cmd.Process.Pid, "version", p.spec.Version)
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	defer func() {
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
	}()
	select {
	case err := <-waitErr:
		if err == nil {
			return errors.New("exited with status 0")
		}
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-waitErr:
		case <-time.After(p.grace):
			p.log.Warn("did not stop after SIGTERM; killing")
			_ = cmd.Process.Kill()
			<-waitErr
		}
		p.log.Info("stopped")
		return ctx.Err()
	}
}

// stop stops the process and waits until it has exited.
func (p *proc) stop() {
	p.cancel()
	<-p.done
}
