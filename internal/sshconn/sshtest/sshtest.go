// Package sshtest starts real OpenSSH sshd servers on loopback addresses for
// tests: a temporary host key, an authorized_keys file holding a generated
// client key, and a fake `sudo` on the remote PATH that behaves like a
// sudoers configuration chosen by the test (without touching the system's
// users or sudoers).
//
// The server runs as the current user (root in CI). When running as root,
// sshd needs its privilege-separation directory /run/sshd, which Start
// creates if missing, as Debian's service unit does.
package sshtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHD is the sshd binary used.
const SSHD = "/usr/sbin/sshd"

// SudoMode selects the behaviour of the fake sudo on the server's PATH.
type SudoMode int

const (
	SudoOK       SudoMode = iota // runs the command (like NOPASSWD)
	SudoPassword                 // "sudo: a password is required"; hangs without -n
	SudoTTY                      // requiretty: fails without a controlling tty
	SudoDenied                   // "user is not allowed to execute ..."
	SudoNone                     // no sudo on the PATH at all
)

// Options configure a server. The zero value is a server on 127.0.0.1 with a
// free port, a new ed25519 host key and a working sudo.
type Options struct {
	// Addr is the IP address to listen on (default 127.0.0.1; any
	// 127.0.0.0/8 address works on Linux).
	Addr string
	// Port to listen on (0: a free port).
	Port int
	// HostKey is the host's private key (default: a new ed25519 key).
	HostKey crypto.Signer
	// ExtraHostKeys are further host keys (e.g. an ECDSA key next to the
	// ed25519 one, as a stock Debian host has).
	ExtraHostKeys []crypto.Signer
	// AuthorizedKeys are accepted for login (default: the server's own
	// generated ClientKey).
	AuthorizedKeys []ssh.PublicKey
	Sudo           SudoMode
	// ExtraConfig is put at the top of the generated sshd_config, so its
	// keywords override the defaults (sshd keeps the first value). It
	// must not contain Match blocks.
	ExtraConfig string
}

// Server is a running sshd.
type Server struct {
	Host string // IP address listened on
	Port int
	User string // the user that can log in (the current user)
	// HostKey is the server's public host key; HostSigner its private key.
	HostKey    ssh.PublicKey
	HostSigner crypto.Signer
	// ClientKey is a key authorized on this server, stored unencrypted at
	// ClientKeyFile (mode 0600).
	ClientKey     ssh.Signer
	ClientKeyFile string
	Dir           string // temporary directory holding config, keys, bin/

	tb   testing.TB
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	once sync.Once
}

// Available returns nil when sshd can be run here.
func Available() error {
	if _, err := os.Stat(SSHD); err != nil {
		return fmt.Errorf("%s not found (install Debian's openssh-server): %w", SSHD, err)
	}
	return nil
}

// Require skips the test when sshd is not installed.
func Require(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Skipf("skipping: %v", err)
	}
}

// Addr returns "host:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// KnownHostsName is the server's name in known_hosts ("[host]:port").
func (s *Server) KnownHostsName() string {
	if s.Port == 22 {
		return s.Host
	}
	return fmt.Sprintf("[%s]:%d", s.Host, s.Port)
}

// KnownHostsLine returns a plain known_hosts line for the server.
func (s *Server) KnownHostsLine() string {
	return s.KnownHostsName() + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.HostKey)))
}

// Log returns what sshd wrote so far (it runs with -e).
func (s *Server) Log() string { return s.log.String() }

// NewKey returns a new ed25519 key and writes it unencrypted, in OpenSSH
// format, to dir/name (mode 0600).
func NewKey(tb testing.TB, dir, name string) (ssh.Signer, crypto.Signer, string) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writePrivateKey(tb, path, priv)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return s, priv, path
}

func writePrivateKey(tb testing.TB, path string, key crypto.Signer) {
	tb.Helper()
	blk, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Start starts sshd and stops it when the test ends. It fails the test if
// sshd does not accept connections within 10 seconds.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	Require(tb)
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1"
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			tb.Fatalf("sshtest: creating /run/sshd: %v", err)
		}
	}
	dir := tb.TempDir()
	s := &Server{Host: opts.Addr, Dir: dir, tb: tb, User: currentUser(tb)}

	if opts.HostKey == nil {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			tb.Fatal(err)
		}
		opts.HostKey = priv
	}
	s.HostSigner = opts.HostKey
	hostKeyPath := filepath.Join(dir, "ssh_host_key")
	writePrivateKey(tb, hostKeyPath, opts.HostKey)
	pub, err := ssh.NewPublicKey(opts.HostKey.Public())
	if err != nil {
		tb.Fatal(err)
	}
	s.HostKey = pub
	hostKeyPaths := []string{hostKeyPath}
	for i, k := range opts.ExtraHostKeys {
		p := filepath.Join(dir, fmt.Sprintf("ssh_host_key_%d", i+1))
		writePrivateKey(tb, p, k)
		hostKeyPaths = append(hostKeyPaths, p)
	}

	s.ClientKey, _, s.ClientKeyFile = NewKey(tb, dir, "id_client")
	keys := opts.AuthorizedKeys
	if len(keys) == 0 {
		keys = []ssh.PublicKey{s.ClientKey.PublicKey()}
	}
	var ak bytes.Buffer
	for _, k := range keys {
		ak.Write(ssh.MarshalAuthorizedKey(k))
	}
	akPath := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(akPath, ak.Bytes(), 0o600); err != nil {
		tb.Fatal(err)
	}

	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	if opts.Sudo != SudoNone {
		if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(fakeSudo(opts.Sudo, s.User)), 0o755); err != nil {
			tb.Fatal(err)
		}
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := opts.Port
		if port == 0 {
			port = freePort(tb, opts.Addr)
		}
		s.Port = port
		cfgPath := filepath.Join(dir, "sshd_config")
		cfg := sshdConfig(opts, port, hostKeyPaths, akPath, bin)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			tb.Fatal(err)
		}
		lastErr = s.launch(cfgPath)
		if lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		if opts.Port != 0 {
			break
		}
	}
	tb.Fatalf("sshtest: sshd did not start: %v\n%s", lastErr, s.Log())
	return nil
}

func (s *Server) launch(cfgPath string) error {
	s.log = &syncBuffer{}
	s.done = make(chan struct{})
	s.once = sync.Once{}
	cmd := exec.Command(SSHD, "-D", "-e", "-f", cfgPath)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited: %s", strings.TrimSpace(s.log.String()))
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			_, rerr := c.Read(buf)
			c.Close()
			if rerr == nil && string(buf) == "SSH-" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return errors.New("sshd not accepting connections after 10s")
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	// Per-connection children and their commands first, then the listener.
	for _, pid := range descendants(s.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGCONT)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// Stop stops sshd and everything it started. It is safe to call twice.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.kill()
		if s.tb.Failed() {
			s.tb.Logf("sshd %s log:\n%s", s.Addr(), tail(s.Log(), 4000))
		}
	})
}

// Restart stops the server and starts it again on the same address and port
// with a new host key (a node rebuilt with the same address). It returns
// the new public host key.
func (s *Server) Restart(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s.Stop()
	opts.Addr, opts.Port = s.Host, s.Port
	if len(opts.AuthorizedKeys) == 0 {
		opts.AuthorizedKeys = []ssh.PublicKey{s.ClientKey.PublicKey()}
	}
	var ns *Server
	// The port may linger briefly; retry for a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		ns, ok = tryStart(tb, opts)
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ns == nil {
		tb.Fatalf("sshtest: restart on %s failed", s.Addr())
	}
	ns.ClientKey, ns.ClientKeyFile = s.ClientKey, s.ClientKeyFile
	return ns
}

func tryStart(tb testing.TB, opts Options) (s *Server, ok bool) {
	// Start calls Fatalf on failure; probe the port first instead.
	l, err := net.Listen("tcp", net.JoinHostPort(opts.Addr, strconv.Itoa(opts.Port)))
	if err != nil {
		return nil, false
	}
	l.Close()
	return Start(tb, opts), true
}

// ConnectionPIDs returns the per-connection sshd processes and the commands
// they run (every descendant of the listening sshd).
func (s *Server) ConnectionPIDs() []int { return descendants(s.cmd.Process.Pid) }

// KillConnections kills (SIGKILL) every per-connection sshd process and
// command: client connections drop as if the node had crashed. The
// listener keeps running. It returns how many processes it killed.
func (s *Server) KillConnections() int {
	pids := s.ConnectionPIDs()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return len(pids)
}

// SuspendConnections stops (SIGSTOP) every per-connection process: the TCP
// connections stay open but nothing answers, like a hung host or a silent
// network partition. The returned function resumes them.
func (s *Server) SuspendConnections() (resume func()) {
	pids := s.ConnectionPIDs()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	return func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
}

func sshdConfig(opts Options, port int, hostKeys []string, authKeys, bin string) string {
	var b strings.Builder
	// sshd keeps the first value of a keyword: ExtraConfig goes first so
	// that it overrides the defaults below.
	if opts.ExtraConfig != "" {
		b.WriteString(opts.ExtraConfig)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Port %d\nListenAddress %s\n", port, opts.Addr)
	for _, k := range hostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", authKeys)
	b.WriteString(`StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
PidFile none
UseDNS no
MaxStartups 200
MaxSessions 20
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
LogLevel INFO
Subsystem sftp internal-sftp
`)
	// SHLVL=1 keeps bash from sourcing ~/.bashrc for sshd-run commands
	// (Debian builds bash with SSH_SOURCE_BASHRC), so that a developer's
	// slow .bashrc does not distort timings.
	fmt.Fprintf(&b, "SetEnv PATH=%s:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin SHLVL=1 LC_ALL=C\n", bin)
	return b.String()
}

// fakeSudo returns a sudo stand-in printing real sudo's messages and exiting
// 1 as real sudo does.
func fakeSudo(mode SudoMode, user string) string {
	var check string
	switch mode {
	case SudoPassword:
		check = `if [ "$nonint" = 1 ]; then
  echo "sudo: a password is required" >&2
  exit 1
fi
# Without -n real sudo would prompt and wait; so do we.
echo "[sudo] password for ` + user + `: " >&2
exec sleep 3600`
	case SudoTTY:
		check = `if ! (: </dev/tty) 2>/dev/null; then
  echo "sudo: sorry, you must have a tty to run sudo" >&2
  exit 1
fi`
	case SudoDenied:
		check = `echo "Sorry, user ` + user + ` is not allowed to execute '$*' as root on $(hostname)." >&2
exit 1`
	}
	return `#!/bin/sh
# fake sudo for tests (sshtest)
nonint=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) nonint=1; shift ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
` + check + `
exec "$@"
`
}

func freePort(tb testing.TB, addr string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		tb.Fatalf("sshtest: no free port on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func currentUser(tb testing.TB) string {
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	return u.Username
}

// descendants returns every descendant process of pid (Linux /proc).
func descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces/parens.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
