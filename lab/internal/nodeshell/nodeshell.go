// Package nodeshell is what a lab node's sshd runs for every session
// (its ForceCommand): it puts the session into a private mount namespace
// in which the node's state directories are bind-mounted over the paths
// the procedures use, puts the node's tools first on PATH, and execs the
// user's command with bash -c (or an interactive shell) in the node's
// /root. Real coreutils then work on node paths, and nothing a command
// does reaches the machine's own /etc/kubernetes, /var/lib, /tmp, ...
//
// The exec chain keeps one process: bash -c ForceCommand execs node-shell,
// which execs bash -c "$SSH_ORIGINAL_COMMAND", so the pid a command reports
// ($$) is the session's process group leader, as runbook's SSH client
// expects when it kills a timed-out command's process group.
package nodeshell

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/runbookhq/runbook/lab/internal/layout"
	"github.com/runbookhq/runbook/lab/internal/nodessh"
)

// Mount is one bind mount of a node directory over a path of the machine.
type Mount struct {
	Path string // absolute path inside the node (and the mount point)
	// CreateHost allows creating the mount point on the machine when it is
	// missing (an empty directory; nothing is ever written into it).
	CreateHost bool
	Mode       os.FileMode // mode of the node-side directory when created
}

// Mounts are the node paths. /run is mounted before the lab dir and the
// binary, which are bound inside it.
var Mounts = []Mount{
	{Path: "/etc/kubernetes", CreateHost: true, Mode: 0o755},
	{Path: "/etc/apt", Mode: 0o755},
	{Path: "/var/lib", Mode: 0o755},
	{Path: "/var/log", Mode: 0o755},
	{Path: "/backup", CreateHost: true, Mode: 0o755},
	{Path: "/opt", CreateHost: true, Mode: 0o755},
	{Path: "/usr/local", Mode: 0o755},
	{Path: "/tmp", Mode: 0o1777},
	{Path: "/root", Mode: 0o700},
	{Path: "/run", Mode: 0o755},
}

// PATH inside a node.
const PATH = nodessh.InnerBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// PrepareNode creates the node-side directories of every mount.
func PrepareNode(l layout.Lab, node string) error {
	for _, m := range Mounts {
		p := l.NodePath(node, m.Path)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(p, m.Mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// Exec enters the node and execs the session's command. It returns only
// on failure.
func Exec(labDir, node string) error {
	l, err := layout.New(labDir)
	if err != nil {
		return err
	}
	cfg, err := l.ReadConfig()
	if err != nil {
		return err
	}
	found := false
	for _, n := range cfg.Nodes {
		found = found || n.Name == node
	}
	if !found {
		return fmt.Errorf("no node %q in lab %s", node, l.Dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	shell := "/bin/bash"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/sh"
	}
	// Namespaces belong to the thread: unshare, mount and exec on this one.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("unshare: %w (the lab's nodes need root with CAP_SYS_ADMIN)", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	_ = unix.Sethostname([]byte(node))
	// Open every source first: a mount may hide the lab dir (a lab in /tmp).
	type src struct {
		fd     int
		target string
	}
	var srcs []src
	open := func(p string, dir bool) (int, error) {
		flags := unix.O_PATH | unix.O_CLOEXEC
		if dir {
			flags |= unix.O_DIRECTORY
		}
		return unix.Open(p, flags, 0)
	}
	for _, m := range Mounts {
		if _, err := os.Stat(m.Path); errors.Is(err, os.ErrNotExist) {
			if !m.CreateHost {
				continue
			}
			if err := os.MkdirAll(m.Path, 0o755); err != nil {
				return fmt.Errorf("create mount point %s: %w", m.Path, err)
			}
		}
		fd, err := open(l.NodePath(node, m.Path), true)
		if err != nil {
			return fmt.Errorf("node dir for %s: %w", m.Path, err)
		}
		srcs = append(srcs, src{fd, m.Path})
	}
	fd, err := open(l.Dir, true)
	if err != nil {
		return err
	}
	srcs = append(srcs, src{fd, nodessh.InnerLab})
	if fd, err = open(exe, false); err != nil {
		return err
	}
	srcs = append(srcs, src{fd, nodessh.InnerExe})
	for _, s := range srcs {
		if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", s.fd), s.target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s: %w", s.target, err)
		}
		unix.Close(s.fd)
	}
	if err := os.Chdir("/root"); err != nil {
		return err
	}
	env := environ(node, shell)
	cmd := os.Getenv("SSH_ORIGINAL_COMMAND")
	var argv []string
	switch {
	case cmd != "":
		argv = []string{filepath.Base(shell), "-c", cmd}
	case filepath.Base(shell) == "bash":
		argv = []string{"-bash", "--noprofile", "--norc", "-i"}
	default:
		argv = []string{"-sh", "-i"}
	}
	return syscall.Exec(shell, argv, env)
}

func environ(node, shell string) []string {
	drop := map[string]bool{"PATH": true, "HOME": true, "PWD": true, "OLDPWD": true, "SHELL": true, "HOSTNAME": true,
		"RUNBOOK_LAB_DIR": true, "RUNBOOK_LAB_NODE": true, "RUNBOOK_LAB_ROOT": true, "PS1": true, "KUBECONFIG": true}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+PATH, "HOME=/root", "PWD=/root", "SHELL="+shell, "HOSTNAME="+node,
		"RUNBOOK_LAB_DIR="+nodessh.InnerLab, "RUNBOOK_LAB_NODE="+node, `PS1=root@`+node+`:\w# `)
}
