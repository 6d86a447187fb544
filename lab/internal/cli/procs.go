package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodessh"
)

// supervisorPID returns the pid of the lab's running supervisor, or 0 when
// none runs. A pid is only trusted if that process's command line is this
// lab's supervisor, so a recycled pid is never signalled.
func supervisorPID(l layout.Lab) (int, error) {
	b, err := os.ReadFile(l.PIDFile())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds %q", l.PIDFile(), strings.TrimSpace(string(b)))
	}
	if isLabProcess(pid, l, true) {
		return pid, nil
	}
	return 0, nil
}

func cmdline(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// isLabProcess tells whether pid is a runbook-lab process of this lab: the
// supervisor itself (supervise --dir DIR) or, when supervisorOnly is
// false, any runbook-lab child.
func isLabProcess(pid int, l layout.Lab, supervisorOnly bool) bool {
	return isLabCommand(cmdline(pid), l, supervisorOnly)
}

// isLabCommand is isLabProcess on a command line. A child counts only when
// its command line names this lab's directory (every child's does: --dir,
// or certificate and data paths under it): process ids and groups are
// reused, and a stale group id must never make down signal another lab.
func isLabCommand(args []string, l layout.Lab, supervisorOnly bool) bool {
	if !supervisorOnly && strings.Contains(strings.Join(args, " "), nodessh.SSHD+" -D -e -f "+l.SSHDir()+"/") {
		// A node's sshd (-f <lab>/ssh/nodes/<node>/sshd_config); sshd rewrites
		// its command line to "sshd: /usr/sbin/sshd -D ... [listener] ...".
		return true
	}
	if len(args) < 2 {
		return false
	}
	if supervisorOnly {
		return args[1] == "supervise" && len(args) >= 4 && args[2] == "--dir" && args[3] == l.Dir
	}
	if !strings.Contains(filepath.Base(args[0]), "runbook-lab") {
		return false
	}
	for _, a := range args[1:] {
		if a == l.Dir || strings.HasSuffix(a, "="+l.Dir) || strings.Contains(a, l.Dir+"/") {
			return true
		}
	}
	return false
}

// groupMembers lists live processes in process group pgid (the
// supervisor's session: it and every child it started).
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces) start after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			out = append(out, pid)
		}
	}
	return out
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
