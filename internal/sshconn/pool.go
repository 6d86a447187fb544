package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kevinburke/ssh_config"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// maxSessionsPerConn bounds concurrent sessions on one connection (OpenSSH's
// MaxSessions defaults to 10; keep some slack for sessions still closing).
const maxSessionsPerConn = 8

// Pool holds at most one connection per node for the duration of a run.
// Connections to a ProxyJump bastion are shared by every node behind it.
// It is safe for concurrent use.
type Pool struct {
	log        *slog.Logger
	userConfig string
	agentSock  string
	onTrust    func(TrustEvent)

	mu             sync.Mutex
	entries        map[string]*poolEntry
	sshConfigCache map[string]*ssh_config.Config
	closed         bool

	khMu sync.Mutex // serialises known_hosts writes
}

type poolEntry struct {
	ready chan struct{}
	c     *Client
	err   error
}

// Option configures a Pool.
type Option func(*Pool)

// WithLogger sets the logger (default: slog.Default()). Logs never contain
// key material, passwords or command output.
func WithLogger(l *slog.Logger) Option { return func(p *Pool) { p.log = l } }

// WithUserSSHConfig sets the user ssh_config read after the plan-given ones
// (default ~/.ssh/config; "" reads none).
func WithUserSSHConfig(path string) Option { return func(p *Pool) { p.userConfig = path } }

// WithAgentSocket sets the ssh-agent socket (default $SSH_AUTH_SOCK; ""
// disables the agent).
func WithAgentSocket(path string) Option { return func(p *Pool) { p.agentSock = path } }

// WithTrustCallback is called after trust-on-first-use appended a host key
// to known_hosts (in addition to a Warn log line).
func WithTrustCallback(f func(TrustEvent)) Option { return func(p *Pool) { p.onTrust = f } }

// NewPool returns an empty pool.
func NewPool(opts ...Option) *Pool {
	p := &Pool{
		log:            slog.Default(),
		userConfig:     defaultUserConfig(),
		agentSock:      os.Getenv("SSH_AUTH_SOCK"),
		entries:        map[string]*poolEntry{},
		sshConfigCache: map[string]*ssh_config.Config{},
	}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p
}

// Client returns the pool's connection to cfg.Node, connecting on first use
// (and again if the previous connection was lost). Later calls for the same
// node return the same Client whatever their cfg.
func (p *Pool) Client(ctx context.Context, cfg Config) (*Client, error) {
	t, err := p.Resolve(cfg)
	if err != nil {
		return nil, err
	}
	c, _, err := p.client(ctx, t)
	return c, err
}

// connectStage records how far a connection attempt got (for Preflight).
type connectStage struct {
	reachable bool
	hostKey   ssh.PublicKey
	hostKeyOK bool
}

func (p *Pool) client(ctx context.Context, t *Target) (*Client, *connectStage, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, errors.New("sshconn: pool is closed")
		}
		e, ok := p.entries[t.Node]
		if !ok {
			e = &poolEntry{ready: make(chan struct{})}
			p.entries[t.Node] = e
			p.mu.Unlock()
			st := &connectStage{}
			e.c, e.err = p.connect(ctx, t, st)
			p.mu.Lock()
			if e.err != nil || p.closed {
				delete(p.entries, t.Node)
			}
			closed := p.closed
			p.mu.Unlock()
			close(e.ready)
			if closed && e.c != nil {
				e.c.close()
				return nil, st, errors.New("sshconn: pool is closed")
			}
			return e.c, st, e.err
		}
		p.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		if e.err != nil {
			continue // the attempt failed and was removed; try ourselves
		}
		if !e.c.isLost() {
			return e.c, &connectStage{reachable: true, hostKey: e.c.hostKey, hostKeyOK: true}, nil
		}
		p.mu.Lock()
		if p.entries[t.Node] == e {
			delete(p.entries, t.Node)
		}
		p.mu.Unlock()
		e.c.close()
	}
}

// Close closes every connection of the pool (nodes first, then bastions).
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var nodes, jumps []*Client
	for k, e := range p.entries {
		select {
		case <-e.ready:
		default:
			continue // still connecting; closed when it finishes
		}
		if e.c == nil {
			continue
		}
		if strings.HasPrefix(k, "jump:") {
			jumps = append(jumps, e.c)
		} else {
			nodes = append(nodes, e.c)
		}
	}
	p.entries = map[string]*poolEntry{}
	p.mu.Unlock()
	var errs []error
	for _, c := range append(nodes, jumps...) {
		if err := c.close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// connect dials t (through its bastion, if any), verifies the host key and
// authenticates, all within t.ConnectTimeout.
func (p *Pool) connect(ctx context.Context, t *Target, st *connectStage) (*Client, error) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, t.ConnectTimeout)
	defer cancel()
	log := p.log.With("node", t.Node, "addr", t.Addr(), "user", t.User)

	var jump *Client
	if t.Jump != nil {
		var err error
		jump, _, err = p.client(cctx, t.Jump)
		if err != nil {
			return nil, p.connectErr(ctx, t, fmt.Errorf("via jump host %s: %w", t.Jump.Addr(), err))
		}
	}

	hk, err := p.newHostKeyChecker(t.Node, t.KnownHostsName, t.KnownHostsFiles, t.TrustOnFirstUse)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", t.Node, err)
	}
	signers, closeAgent := p.signers(t, log)
	defer closeAgent()
	var tried []string
	cc := &ssh.ClientConfig{
		User: t.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			tried = tried[:0]
			for _, s := range signers {
				tried = append(tried, ssh.FingerprintSHA256(s.PublicKey()))
			}
			return signers, nil
		})},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(),
		Timeout:           t.ConnectTimeout,
		ClientVersion:     "SSH-2.0-runbook",
	}

	var raw net.Conn
	if jump != nil {
		raw, err = jump.conn.DialContext(cctx, "tcp", t.Addr())
		if err != nil {
			if jump.isLost() {
				return nil, &ConnectionLostError{Node: t.Node, Err: fmt.Errorf("jump host %s: %w", t.Jump.Addr(), jump.lostErr)}
			}
			return nil, p.connectErr(ctx, t, fmt.Errorf("via jump host %s: %w", t.Jump.Addr(), err))
		}
	} else {
		var d net.Dialer
		raw, err = d.DialContext(cctx, "tcp", t.Addr())
		if err != nil {
			return nil, p.connectErr(ctx, t, err)
		}
	}
	st.reachable = true

	type hsResult struct {
		c     ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	done := make(chan hsResult, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(raw, t.Addr(), cc)
		done <- hsResult{c, chans, reqs, err}
	}()
	var r hsResult
	select {
	case r = <-done:
	case <-cctx.Done():
		raw.Close()
		<-done // returns promptly once the connection is closed
		st.hostKey = hk.presented
		return nil, p.connectErr(ctx, t, cctx.Err())
	}
	st.hostKey = hk.presented
	if r.err != nil {
		raw.Close()
		if herr := hk.handshakeError(r.err); herr != nil {
			log.Error("host key verification failed", "error", herr)
			return nil, herr
		}
		if hk.presented != nil {
			st.hostKeyOK = true
		}
		if strings.Contains(r.err.Error(), "unable to authenticate") {
			return nil, &AuthError{Node: t.Node, User: t.User, Addr: t.Addr(), Tried: tried, Err: r.err}
		}
		return nil, p.connectErr(ctx, t, r.err)
	}
	st.hostKeyOK = true
	c := &Client{
		pool:     p,
		target:   t,
		conn:     ssh.NewClient(r.c, r.chans, r.reqs),
		jump:     jump,
		hostKey:  hk.presented,
		sessions: make(chan struct{}, maxSessionsPerConn),
		lost:     make(chan struct{}),
		closed:   make(chan struct{}),
		log:      log,
	}
	go c.watch()
	if t.KeepaliveInterval > 0 {
		go c.keepalive(t.KeepaliveInterval, t.KeepaliveMaxMissed)
	}
	log.Info("ssh connected", "host_key", fingerprint(hk.presented), "via", jumpName(t), "duration", time.Since(start).Round(time.Millisecond))
	return c, nil
}

func jumpName(t *Target) string {
	if t.Jump == nil {
		return ""
	}
	return t.Jump.String()
}

// connectErr turns a dial/handshake failure into the error returned to the
// caller; a deadline of our own becomes a TimeoutError.
func (p *Pool) connectErr(parent context.Context, t *Target, err error) error {
	var te *TimeoutError
	var cl *ConnectionLostError
	if errors.As(err, &te) || errors.As(err, &cl) {
		return err
	}
	if parent.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)) {
		return &TimeoutError{Node: t.Node, Op: "connect", Timeout: t.ConnectTimeout}
	}
	if parent.Err() != nil {
		return fmt.Errorf("node %s: connect to %s: %w", t.Node, t.Addr(), parent.Err())
	}
	return fmt.Errorf("node %s: connect to %s: %w", t.Node, t.Addr(), err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// signers returns the identities to offer: the identity files (or the
// default ~/.ssh/id_* when none is configured), then ssh-agent keys not
// already offered unless IdentitiesOnly. Passphrase-protected files are
// skipped with a warning: load them into ssh-agent instead.
func (p *Pool) signers(t *Target, log *slog.Logger) ([]ssh.Signer, func()) {
	var out []ssh.Signer
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		k := string(s.PublicKey().Marshal())
		if !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	files := t.IdentityFiles
	explicit := len(files) > 0
	if !explicit {
		files = defaultIdentityFiles()
	}
	for _, f := range files {
		s, err := loadIdentity(f)
		switch {
		case err == nil:
			add(s)
		case errors.Is(err, os.ErrNotExist) && !explicit:
		case errors.As(err, new(*ssh.PassphraseMissingError)):
			log.Warn("identity file is passphrase-protected; add it to ssh-agent", "identity_file", f)
		default:
			log.Warn("cannot use identity file", "identity_file", f, "error", err)
		}
	}
	closeAgent := func() {}
	if p.agentSock != "" && !t.IdentitiesOnly {
		conn, err := net.DialTimeout("unix", p.agentSock, 2*time.Second)
		if err != nil {
			log.Debug("ssh-agent not reachable", "error", err)
		} else {
			closeAgent = func() { conn.Close() }
			ag := agent.NewClient(conn)
			as, err := ag.Signers()
			if err != nil {
				log.Debug("ssh-agent listing failed", "error", err)
			}
			for _, s := range as {
				add(s)
			}
		}
	}
	return out, closeAgent
}

func loadIdentity(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	clear(data)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, err
		}
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	// Use an OpenSSH certificate next to the key, if any.
	if certData, err := os.ReadFile(path + "-cert.pub"); err == nil {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey(certData); err == nil {
			if cert, ok := pub.(*ssh.Certificate); ok && bytes.Equal(cert.Key.Marshal(), s.PublicKey().Marshal()) {
				if cs, err := ssh.NewCertSigner(cert, s); err == nil {
					return cs, nil
				}
			}
		}
	}
	return s, nil
}

// Client is one node's SSH connection. Run may be called concurrently; each
// call opens its own session.
type Client struct {
	pool     *Pool
	target   *Target
	conn     *ssh.Client
	jump     *Client
	hostKey  ssh.PublicKey
	sessions chan struct{}
	log      *slog.Logger

	lostOnce  sync.Once
	lost      chan struct{} // closed when the connection is gone
	lostErr   error
	closeOnce sync.Once
	closed    chan struct{} // closed by close()
}

// Node returns the node name (the pool key).
func (c *Client) Node() string { return c.target.Node }

// Target returns the resolved connection settings.
func (c *Client) Target() Target { return *c.target }

// HostKey returns the SHA256 fingerprint of the node's verified host key.
func (c *Client) HostKey() string { return fingerprint(c.hostKey) }

func (c *Client) isLost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

func (c *Client) markLost(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lost)
		select {
		case <-c.closed:
		default:
			c.log.Warn("ssh connection lost", "error", err)
		}
	})
}

// watch waits for the transport to end.
func (c *Client) watch() {
	err := c.conn.Wait()
	if err == nil {
		err = io.EOF
	}
	select {
	case <-c.closed:
		c.markLost(errors.New("connection closed"))
	default:
		c.markLost(err)
	}
}

// keepalive sends keepalive@openssh.com every interval and declares the
// connection lost after maxMissed intervals in a row without a reply.
func (c *Client) keepalive(interval time.Duration, maxMissed int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var pending chan error
	missed := 0
	for {
		select {
		case <-c.lost:
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				c.markLost(fmt.Errorf("keepalive: %w", err))
				return
			}
			missed = 0
			continue
		case <-tick.C:
		}
		if pending != nil {
			missed++
			if missed >= maxMissed {
				c.markLost(fmt.Errorf("no reply to %d keepalives in a row (interval %s)", missed, interval))
				c.conn.Close()
				return
			}
			continue
		}
		pending = make(chan error, 1)
		go func(ch chan error) {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			ch <- err
		}(pending)
	}
}

func (c *Client) close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.conn.Close()
		c.markLost(errors.New("connection closed"))
	})
	return err
}
