package sshconn

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Defaults used when neither the plan nor any ssh_config sets a value.
const (
	DefaultConnectTimeout     = 10 * time.Second
	DefaultKeepaliveInterval  = 15 * time.Second
	DefaultKeepaliveMaxMissed = 3
	DefaultMaxOutput          = 1 << 20 // bytes kept per stream
	// PreflightSudoTimeout bounds the `sudo -n true` probe of Preflight.
	PreflightSudoTimeout = 5 * time.Second
)

// Config describes how to reach one node. Zero fields are filled from
// ssh_config and then from defaults; see Pool.Resolve for the precedence.
type Config struct {
	// Node is the node's name in the plan and the Pool key. ssh_config Host
	// patterns are matched against it (and against Address).
	Node string
	// Address overrides ssh_config HostName.
	Address string
	User    string
	Port    int
	// IdentityFiles, when set, replace ssh_config's IdentityFile list.
	IdentityFiles []string
	// KnownHostsFiles, when set, replace ssh_config's UserKnownHostsFile and
	// the defaults (~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts). The first
	// file is the one trust-on-first-use appends to.
	KnownHostsFiles []string
	// SSHConfigFiles are read before the user's ~/.ssh/config; the first
	// value found wins, as in OpenSSH.
	SSHConfigFiles []string
	// ProxyJump is "[user@]host[:port]" (a comma-separated chain is
	// accepted); "none" disables one set in ssh_config.
	ProxyJump string
	// PTY requests a pseudo-terminal for every command (stderr is then merged
	// into stdout). Only for nodes whose sudo requires a tty; off by default.
	PTY bool
	// ConnectTimeout bounds TCP connect + SSH handshake + authentication.
	ConnectTimeout time.Duration
	// CommandTimeout is the default per-command limit (0: none).
	CommandTimeout time.Duration
	// KeepaliveInterval is the period of keepalive@openssh.com requests;
	// negative disables keepalives.
	KeepaliveInterval time.Duration
	// KeepaliveMaxMissed is how many unanswered keepalives in a row declare
	// the connection lost.
	KeepaliveMaxMissed int
	// TrustOnFirstUse appends the key of a host that has no known_hosts
	// entry at all to the first known_hosts file (logged, and reported to the
	// pool's trust callback). It never accepts a changed key.
	TrustOnFirstUse bool
}

// Target is a fully resolved connection description (see Pool.Resolve).
type Target struct {
	Node  string // pool key
	Alias string // name matched against ssh_config Host patterns
	Host  string // host name or IP dialled
	Port  int
	User  string
	// KnownHostsName is the name checked in known_hosts: HostKeyAlias or
	// Host, with "[...]:port" for ports other than 22.
	KnownHostsName  string
	IdentityFiles   []string
	IdentitiesOnly  bool // do not offer ssh-agent keys
	KnownHostsFiles []string
	// Jump is the bastion the connection is tunnelled through, or nil.
	Jump               *Target
	PTY                bool
	ConnectTimeout     time.Duration
	CommandTimeout     time.Duration
	KeepaliveInterval  time.Duration
	KeepaliveMaxMissed int
	TrustOnFirstUse    bool
}

// Addr returns "host:port".
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// String returns "user@host:port", followed by " via ..." for a jump host.
func (t Target) String() string {
	s := t.User + "@" + t.Addr()
	if t.Jump != nil {
		s += " via " + t.Jump.String()
	}
	return s
}

// sshConfigs is the ordered list of parsed ssh_config files for one lookup.
type sshConfigs struct {
	files []*ssh_config.Config
}

func (p *Pool) loadSSHConfigs(planFiles []string) (*sshConfigs, error) {
	sc := &sshConfigs{}
	for _, f := range planFiles {
		c, err := p.parseSSHConfig(f)
		if err != nil {
			return nil, err
		}
		sc.files = append(sc.files, c)
	}
	if p.userConfig != "" {
		c, err := p.parseSSHConfig(p.userConfig)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			sc.files = append(sc.files, c)
		}
	}
	return sc, nil
}

func (p *Pool) parseSSHConfig(path string) (*ssh_config.Config, error) {
	p.mu.Lock()
	c, ok := p.sshConfigCache[path]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ssh_config: %w", err)
	}
	defer f.Close()
	c, err = ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh_config %s: %w", path, err)
	}
	p.mu.Lock()
	p.sshConfigCache[path] = c
	p.mu.Unlock()
	return c, nil
}

// get returns the first value of key for any of the aliases, files in order.
func (sc *sshConfigs) get(aliases []string, key string) string {
	for _, f := range sc.files {
		for _, a := range aliases {
			if v, err := f.Get(a, key); err == nil && v != "" {
				return v
			}
		}
	}
	return ""
}

// getAll accumulates every value of key (IdentityFile, UserKnownHostsFile).
func (sc *sshConfigs) getAll(aliases []string, key string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range sc.files {
		for _, a := range aliases {
			vs, err := f.GetAll(a, key)
			if err != nil {
				continue
			}
			for _, v := range vs {
				if !seen[v] {
					seen[v] = true
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// Resolve computes the Target for cfg without connecting.
//
// Precedence, highest first:
//  1. explicit non-zero fields of cfg (the plan's per-node settings);
//  2. the plan-given cfg.SSHConfigFiles, in order;
//  3. the user's ~/.ssh/config (see WithUserSSHConfig);
//  4. defaults (current user, port 22, ~/.ssh/id_* identities,
//     ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts).
//
// Within the ssh_config files the first value found wins, as in OpenSSH;
// Host patterns are matched against cfg.Node, then cfg.Address. Keywords
// honoured: HostName (with %h), User, Port, IdentityFile, IdentitiesOnly,
// ProxyJump, UserKnownHostsFile, HostKeyAlias, ConnectTimeout,
// ServerAliveInterval, ServerAliveCountMax. StrictHostKeyChecking is ignored:
// host keys are always checked strictly. RequestTTY is ignored: a PTY is only
// requested when the plan sets PTY. ProxyCommand is not supported.
func (p *Pool) Resolve(cfg Config) (*Target, error) {
	return p.resolve(cfg, 0)
}

func (p *Pool) resolve(cfg Config, depth int) (*Target, error) {
	if depth > 4 {
		return nil, fmt.Errorf("node %s: ProxyJump chain too deep (loop?)", cfg.Node)
	}
	if cfg.Node == "" && cfg.Address == "" {
		return nil, errors.New("sshconn: Config needs Node or Address")
	}
	sc, err := p.loadSSHConfigs(cfg.SSHConfigFiles)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	var aliases []string
	for _, a := range []string{cfg.Node, cfg.Address} {
		if a != "" && (len(aliases) == 0 || aliases[0] != a) {
			aliases = append(aliases, a)
		}
	}
	alias := aliases[0]
	t := &Target{Node: cfg.Node, Alias: alias, PTY: cfg.PTY, TrustOnFirstUse: cfg.TrustOnFirstUse}
	if t.Node == "" {
		t.Node = alias
	}

	// Host.
	t.Host = cfg.Address
	if t.Host == "" {
		t.Host = alias
		if hn := sc.get(aliases, "HostName"); hn != "" {
			t.Host = expandTokens(hn, alias, "", "")
		}
	}
	// Port.
	t.Port = cfg.Port
	if t.Port == 0 {
		if v := sc.get(aliases, "Port"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("node %s: ssh_config Port %q is not a port", t.Node, v)
			}
			t.Port = n
		} else {
			t.Port = 22
		}
	}
	// User.
	t.User = cfg.User
	if t.User == "" {
		t.User = sc.get(aliases, "User")
	}
	if t.User == "" {
		t.User = localUser()
	}
	// Known hosts name.
	khHost := t.Host
	if a := sc.get(aliases, "HostKeyAlias"); a != "" {
		khHost = a
	}
	t.KnownHostsName = knownHostsName(khHost, t.Port)

	// Identities.
	t.IdentitiesOnly = strings.EqualFold(sc.get(aliases, "IdentitiesOnly"), "yes")
	if len(cfg.IdentityFiles) > 0 {
		t.IdentityFiles = expandAll(cfg.IdentityFiles, alias, t.User, t.Host)
	} else if ids := sc.getAll(aliases, "IdentityFile"); len(ids) > 0 {
		t.IdentityFiles = expandAll(ids, alias, t.User, t.Host)
	}
	// Known hosts files.
	if len(cfg.KnownHostsFiles) > 0 {
		t.KnownHostsFiles = expandAll(cfg.KnownHostsFiles, alias, t.User, t.Host)
	} else if v := sc.getAll(aliases, "UserKnownHostsFile"); len(v) > 0 {
		var files []string
		for _, s := range v {
			files = append(files, strings.Fields(s)...)
		}
		t.KnownHostsFiles = expandAll(files, alias, t.User, t.Host)
	} else {
		t.KnownHostsFiles = defaultKnownHostsFiles()
	}

	// Timeouts and keepalives.
	t.ConnectTimeout = cfg.ConnectTimeout
	if t.ConnectTimeout == 0 {
		t.ConnectTimeout = secondsOr(sc.get(aliases, "ConnectTimeout"), DefaultConnectTimeout)
	}
	t.CommandTimeout = cfg.CommandTimeout
	t.KeepaliveInterval = cfg.KeepaliveInterval
	if t.KeepaliveInterval == 0 {
		t.KeepaliveInterval = secondsOr(sc.get(aliases, "ServerAliveInterval"), DefaultKeepaliveInterval)
	}
	t.KeepaliveMaxMissed = cfg.KeepaliveMaxMissed
	if t.KeepaliveMaxMissed <= 0 {
		if n, err := strconv.Atoi(sc.get(aliases, "ServerAliveCountMax")); err == nil && n > 0 {
			t.KeepaliveMaxMissed = n
		} else {
			t.KeepaliveMaxMissed = DefaultKeepaliveMaxMissed
		}
	}

	if sc.get(aliases, "ProxyCommand") != "" && p.log != nil {
		p.log.Warn("ssh_config ProxyCommand is not supported and is ignored", "node", t.Node)
	}

	// ProxyJump.
	jump := cfg.ProxyJump
	if jump == "" {
		jump = sc.get(aliases, "ProxyJump")
	}
	if jump != "" && !strings.EqualFold(jump, "none") {
		hops := strings.Split(jump, ",")
		last := strings.TrimSpace(hops[len(hops)-1])
		user, host, port, err := parseJump(last)
		if err != nil {
			return nil, fmt.Errorf("node %s: ProxyJump %q: %w", t.Node, jump, err)
		}
		jc := Config{
			Node:               host,
			User:               user,
			Port:               port,
			KnownHostsFiles:    cfg.KnownHostsFiles,
			SSHConfigFiles:     cfg.SSHConfigFiles,
			ConnectTimeout:     cfg.ConnectTimeout,
			KeepaliveInterval:  cfg.KeepaliveInterval,
			KeepaliveMaxMissed: cfg.KeepaliveMaxMissed,
			TrustOnFirstUse:    cfg.TrustOnFirstUse,
		}
		if len(hops) > 1 {
			jc.ProxyJump = strings.Join(hops[:len(hops)-1], ",")
		}
		jt, err := p.resolve(jc, depth+1)
		if err != nil {
			return nil, err
		}
		// A bastion without identities of its own uses the node's.
		if len(jt.IdentityFiles) == 0 {
			jt.IdentityFiles = t.IdentityFiles
		}
		jt.Node = "jump:" + jt.String()
		t.Jump = jt
	}
	return t, nil
}

// parseJump splits "[user@]host[:port]" (IPv6 hosts in brackets).
func parseJump(s string) (user, host string, port int, err error) {
	s = strings.TrimPrefix(s, "ssh://")
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, s = s[:i], s[i+1:]
	}
	host = s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return "", "", 0, fmt.Errorf("bad port %q", p)
		}
		host, port = h, n
	}
	if host == "" {
		return "", "", 0, errors.New("empty host")
	}
	return user, host, port, nil
}

func knownHostsName(host string, port int) string {
	if port == 22 {
		return host
	}
	return "[" + host + "]:" + strconv.Itoa(port)
}

func secondsOr(v string, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}

func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	return ""
}

func defaultUserConfig() string {
	if h := homeDir(); h != "" {
		return filepath.Join(h, ".ssh", "config")
	}
	return ""
}

func defaultKnownHostsFiles() []string {
	var out []string
	if h := homeDir(); h != "" {
		out = append(out, filepath.Join(h, ".ssh", "known_hosts"))
	}
	return append(out, "/etc/ssh/ssh_known_hosts")
}

func defaultIdentityFiles() []string {
	h := homeDir()
	if h == "" {
		return nil
	}
	var out []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		out = append(out, filepath.Join(h, ".ssh", n))
	}
	return out
}

// expandTokens expands the ssh_config tokens %h, %r, %u, %d, %% and a leading ~.
func expandTokens(s, host, remoteUser, dialHost string) string {
	if strings.HasPrefix(s, "~/") || s == "~" {
		s = homeDir() + s[1:]
	}
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			if dialHost != "" {
				b.WriteString(dialHost)
			} else {
				b.WriteString(host)
			}
		case 'n':
			b.WriteString(host)
		case 'r':
			b.WriteString(remoteUser)
		case 'u':
			b.WriteString(localUser())
		case 'd':
			b.WriteString(homeDir())
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func expandAll(in []string, alias, user, host string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, expandTokens(s, alias, user, host))
	}
	return out
}
