// Package nodessh gives every lab node its own OpenSSH sshd: host keys, a
// client key, sshd_config files whose ForceCommand enters the node (see
// package nodeshell), and the files a user or runbook needs to reach the
// nodes: ssh_config, known_hosts and runbook.tfvars. It also lays out the
// node-side files the node shell needs (the tools' bin dir and mount points).
//
// Ensure is idempotent: keys are made once, the rest is rewritten on every
// start (the binary may have moved, a port may have been taken).
package nodessh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/runbookhq/runbook/lab/internal/layout"
)

// SSHD is Debian's sshd.
const SSHD = "/usr/sbin/sshd"

// Paths inside a node (see package nodeshell): the lab directory, the
// runbook-lab binary and the tools' bin dir are bound under /run/runbook-lab.
const (
	InnerBase = "/run/runbook-lab"
	InnerLab  = InnerBase + "/lab"
	InnerExe  = InnerBase + "/runbook-lab"
	InnerBin  = InnerBase + "/bin"
)

// Tools are the commands a node's bin dir provides, each a symlink to the
// runbook-lab binary (multi-call by argv[0]); sudo is a shell script.
var Tools = []string{"apt-get", "apt-mark", "apt-cache", "dpkg-query", "dpkg", "kubeadm", "systemctl",
	"etcdctl", "etcdutl", "kubectl", "journalctl"}

// Available reports whether sshd is installed.
func Available() error {
	if _, err := os.Stat(SSHD); err != nil {
		return fmt.Errorf("%s not found: install Debian's openssh-server (scripts/setup.sh does): %w", SSHD, err)
	}
	return nil
}

// HostKeyFile is a node's ed25519 host key.
func HostKeyFile(l layout.Lab, node string) string {
	return filepath.Join(l.NodeSSHDir(node), "ssh_host_ed25519_key")
}

// SSHDConfigFile is a node's sshd_config.
func SSHDConfigFile(l layout.Lab, node string) string {
	return filepath.Join(l.NodeSSHDir(node), "sshd_config")
}

// NewKey writes a new unencrypted ed25519 key (OpenSSH format, 0600) and
// its .pub.
func NewKey(path, comment string) (ssh.PublicKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := layout.WriteFileAtomic(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + comment + "\n"
	return pub, layout.WriteFileAtomic(path+".pub", []byte(line), 0o644)
}

// ReadPublicKey reads path.pub.
func ReadPublicKey(path string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	return pub, err
}

func ensureKey(path, comment string) (ssh.PublicKey, error) {
	if _, err := os.Stat(path); err == nil {
		if pub, err := ReadPublicKey(path); err == nil {
			return pub, nil
		}
	}
	return NewKey(path, comment)
}

// portFree tells whether host:port can be listened on now.
func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// KnownHostsName is how known_hosts names host:port.
func KnownHostsName(host string, port int) string {
	if port == 22 {
		return host
	}
	return fmt.Sprintf("[%s]:%d", host, port)
}

// Ensure creates what is missing (keys, ports) and rewrites the node
// sshd configs, ssh_config, known_hosts, runbook.tfvars and each node's
// bin dir. exe is the runbook-lab binary sshd's ForceCommand runs. When
// pickPorts is set, a node whose recorded port is taken gets a new one
// (22 when free, else any free port); the supervisor sets it before
// starting the sshds.
func Ensure(l layout.Lab, cfg layout.Config, exe string, pickPorts bool) (layout.Ports, error) {
	ports, err := l.ReadPorts()
	if err != nil {
		return ports, err
	}
	if err := os.MkdirAll(l.SSHDir(), 0o700); err != nil {
		return ports, err
	}
	clientPub, err := ensureKey(l.ClientKey(), "runbook-lab@"+filepath.Base(l.Dir))
	if err != nil {
		return ports, fmt.Errorf("client key: %w", err)
	}
	if err := layout.WriteFileAtomic(l.AuthorizedKeys(), ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return ports, err
	}
	if ports.SSH == nil {
		ports.SSH = map[string]int{}
	}
	changed := false
	for _, n := range cfg.Nodes {
		p := ports.SSH[n.Name]
		if p == 0 || (pickPorts && !portFree(n.IP, p)) {
			if portFree(n.IP, 22) {
				p = 22
			} else if p, err = freePort(n.IP); err != nil {
				return ports, err
			}
			ports.SSH[n.Name] = p
			changed = true
		}
	}
	if changed {
		if err := layout.WriteJSON(l.PortsFile(), ports); err != nil {
			return ports, err
		}
	}
	var known, sshCfg bytes.Buffer
	fmt.Fprintf(&sshCfg, "# runbook-lab %s: one Host per node. Use: ssh -F %s <node>\n", l.Dir, l.SSHConfig())
	for _, n := range cfg.Nodes {
		if err := os.MkdirAll(l.NodeSSHDir(n.Name), 0o700); err != nil {
			return ports, err
		}
		hk, err := ensureKey(HostKeyFile(l, n.Name), "root@"+n.Name)
		if err != nil {
			return ports, fmt.Errorf("host key of %s: %w", n.Name, err)
		}
		// The original key is kept so that the hostkey-changed fault can be undone.
		if _, err := os.Stat(HostKeyFile(l, n.Name) + ".orig"); errors.Is(err, os.ErrNotExist) {
			if err := copyFile(HostKeyFile(l, n.Name), HostKeyFile(l, n.Name)+".orig", 0o600); err != nil {
				return ports, err
			}
			if err := copyFile(HostKeyFile(l, n.Name)+".pub", HostKeyFile(l, n.Name)+".orig.pub", 0o644); err != nil {
				return ports, err
			}
		}
		port := ports.SSH[n.Name]
		if err := layout.WriteFileAtomic(SSHDConfigFile(l, n.Name), []byte(sshdConfig(l, n, port, exe)), 0o600); err != nil {
			return ports, err
		}
		// known_hosts holds the key the lab was created with: the
		// hostkey-changed fault changes the node's key, not this file.
		origPub, err := ReadPublicKey(HostKeyFile(l, n.Name) + ".orig")
		if err != nil {
			origPub = hk
		}
		fmt.Fprintf(&known, "%s %s\n", KnownHostsName(n.IP, port), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(origPub))))
		fmt.Fprintf(&sshCfg, "\nHost %s\n  HostName %s\n  Port %d\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n",
			n.Name, n.IP, port, l.ClientKey(), l.KnownHosts())
		if err := ensureNodeBin(l, n.Name); err != nil {
			return ports, err
		}
	}
	if err := layout.WriteFileAtomic(l.KnownHosts(), known.Bytes(), 0o644); err != nil {
		return ports, err
	}
	if err := layout.WriteFileAtomic(l.SSHConfig(), sshCfg.Bytes(), 0o644); err != nil {
		return ports, err
	}
	tf := fmt.Sprintf("kubeconfig   = %q\nssh_config   = %q\nknown_hosts  = %q\nssh_user     = \"root\"\nnode_address = \"name\"\n",
		l.Kubeconfig(), l.SSHConfig(), l.KnownHosts())
	if err := layout.WriteFileAtomic(l.TFVars(), []byte(tf), 0o644); err != nil {
		return ports, err
	}
	return ports, nil
}

func sshdConfig(l layout.Lab, n layout.Node, port int, exe string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# runbook-lab: sshd of node %s (sshd keeps the first value of a keyword)\n", n.Name)
	fmt.Fprintf(&b, "Port %d\nListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\n", port, n.IP, HostKeyFile(l, n.Name), l.AuthorizedKeys())
	b.WriteString(`StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
PidFile none
UseDNS no
MaxStartups 100:30:300
MaxSessions 64
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
`)
	// SHLVL=1 keeps bash from sourcing ~/.bashrc (Debian's SSH_SOURCE_BASHRC)
	// for the ForceCommand; the node shell then sets the node's environment.
	b.WriteString("SetEnv SHLVL=1\n")
	fmt.Fprintf(&b, "ForceCommand exec %s node-shell --lab %s --node %s\n", shQuote(exe), shQuote(l.Dir), shQuote(n.Name))
	return b.String()
}

// Hash identifies a node's sshd configuration and host key: a change means
// restarting its sshd.
func Hash(l layout.Lab, node string) string {
	h := sha256.New()
	for _, f := range []string{SSHDConfigFile(l, node), HostKeyFile(l, node)} {
		b, _ := os.ReadFile(f)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// NodeRunDir is <node>/run/runbook-lab: inside the node it is
// /run/runbook-lab, holding the mount points of the lab dir and the binary,
// and the tools' bin dir.
func NodeRunDir(l layout.Lab, node string) string {
	return l.NodePath(node, InnerBase)
}

func ensureNodeBin(l layout.Lab, node string) error {
	base := NodeRunDir(l, node)
	bin := filepath.Join(base, "bin")
	for _, d := range []string{bin, filepath.Join(base, "lab")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	exeMount := filepath.Join(base, "runbook-lab")
	if _, err := os.Stat(exeMount); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(exeMount, nil, 0o755); err != nil {
			return err
		}
	}
	for _, t := range Tools {
		p := filepath.Join(bin, t)
		if cur, err := os.Readlink(p); err == nil && cur == InnerExe {
			continue
		}
		_ = os.Remove(p)
		if err := os.Symlink(InnerExe, p); err != nil {
			return err
		}
	}
	return layout.WriteFileAtomic(filepath.Join(bin, "sudo"), []byte(sudoScript(node)), 0o755)
}

func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return layout.WriteFileAtomic(dst, b, perm)
}

func shQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
