package sshconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrConnectionLost matches (errors.Is) every *ConnectionLostError.
var ErrConnectionLost = errors.New("ssh connection lost")

// ErrInDoubt matches (errors.Is) every error after which a command may or may
// not have taken effect on the node: a connection lost after the command was
// started, and a command stopped by its timeout. The caller must probe the
// node's state before doing the work again.
var ErrInDoubt = errors.New("command outcome in doubt")

// KnownKey is one host key recorded in a known_hosts file.
type KnownKey struct {
	Type        string // key type, e.g. "ssh-ed25519"
	Fingerprint string // "SHA256:..."
	File        string // known_hosts file
	Line        int    // 1-based line in File
}

func (k KnownKey) String() string {
	return fmt.Sprintf("%s %s (%s:%d)", k.Type, k.Fingerprint, k.File, k.Line)
}

// HostKeyMismatchError is returned when a node presents a host key other than
// the one(s) recorded for it in known_hosts: the node was rebuilt, or someone
// is intercepting the connection. It is never accepted automatically, not even
// with TrustOnFirstUse; TrustHost replaces the recorded key explicitly.
type HostKeyMismatchError struct {
	Node string
	// Host is the name looked up in known_hosts: "host" for port 22,
	// "[host]:port" otherwise.
	Host string
	// Presented is the key the server offered (nil when the server offered
	// no key type that known_hosts has for it; Detail then says so).
	Presented ssh.PublicKey
	// Known lists the recorded keys for Host, with file and line.
	Known []KnownKey
	// Revoked is set when the presented key is marked @revoked.
	Revoked bool
	Detail  string
	// TrustFile is the known_hosts file to pass to TrustHost (the node's
	// first configured file).
	TrustFile string
}

// PresentedFingerprint returns the SHA256 fingerprint of the presented key, or "".
func (e *HostKeyMismatchError) PresentedFingerprint() string { return fingerprint(e.Presented) }

func (e *HostKeyMismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: host key for %s ", e.Node, e.Host)
	if e.Revoked {
		b.WriteString("is REVOKED")
	} else {
		b.WriteString("has CHANGED")
	}
	if e.Presented != nil {
		fmt.Fprintf(&b, ": presented %s %s", e.Presented.Type(), fingerprint(e.Presented))
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	if len(e.Known) > 0 {
		b.WriteString("; expected ")
		for i, k := range e.Known {
			if i > 0 {
				b.WriteString(" or ")
			}
			b.WriteString(k.String())
		}
	}
	b.WriteString("; the node may have been rebuilt, or the connection is being intercepted; verify the new key out of band, then trust it explicitly (runbook trust-host PLAN NODE)")
	return b.String()
}

// UnknownHostError is returned when known_hosts has no entry for the node and
// trust-on-first-use is off.
type UnknownHostError struct {
	Node string
	// Host is the name looked up in known_hosts ("host" or "[host]:port").
	Host      string
	Presented ssh.PublicKey
	// KnownHostsFiles are the files that were searched.
	KnownHostsFiles []string
	// TrustFile is the known_hosts file to pass to TrustHost (the node's
	// first configured file).
	TrustFile string
}

// PresentedFingerprint returns the SHA256 fingerprint of the presented key.
func (e *UnknownHostError) PresentedFingerprint() string { return fingerprint(e.Presented) }

func (e *UnknownHostError) Error() string {
	files := strings.Join(e.KnownHostsFiles, ", ")
	if files == "" {
		files = "(no known_hosts file exists)"
	}
	return fmt.Sprintf("node %s: host %s is not in known_hosts [%s]; it presented %s %s; verify the fingerprint out of band, then trust it explicitly or enable trust-on-first-use",
		e.Node, e.Host, files, keyType(e.Presented), fingerprint(e.Presented))
}

// AuthError is returned when the server refused every identity offered.
type AuthError struct {
	Node, User, Addr string
	// Tried lists the public-key fingerprints offered (never key material).
	Tried []string
	Err   error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("node %s: authentication as %q at %s failed (offered %d public keys %v): %v",
		e.Node, e.User, e.Addr, len(e.Tried), e.Tried, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// ConnectionLostError reports that the SSH connection to a node dropped (TCP
// closed, or no keepalive answered). When Started is true the command was
// running when it happened and its outcome is in doubt: it may or may not
// have completed. It matches ErrConnectionLost, and ErrInDoubt when Started.
type ConnectionLostError struct {
	Node    string
	Command string // display form of the command (Command.Label if set)
	Started bool
	Err     error // what ended the connection
}

func (e *ConnectionLostError) Error() string {
	what := "before the command started"
	if e.Started {
		what = "while the command was running; it may or may not have completed"
	}
	cmd := ""
	if e.Command != "" {
		cmd = fmt.Sprintf(" running %q", e.Command)
	}
	return fmt.Sprintf("node %s%s: ssh connection lost %s: %v", e.Node, cmd, what, e.Err)
}

func (e *ConnectionLostError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrConnectionLost) and, for started commands,
// errors.Is(err, ErrInDoubt) true.
func (e *ConnectionLostError) Is(target error) bool {
	return target == ErrConnectionLost || (target == ErrInDoubt && e.Started)
}

// TimeoutError reports that connecting (Op "connect") or a command (Op
// "command") took longer than its limit. A timed-out command was signalled
// and its session closed; it matches context.DeadlineExceeded and ErrInDoubt.
type TimeoutError struct {
	Node    string
	Op      string // "connect" or "command"
	Command string // display form of the command, for Op "command"
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	if e.Op == "command" {
		return fmt.Sprintf("node %s: command %q timed out after %s", e.Node, e.Command, e.Timeout)
	}
	return fmt.Sprintf("node %s: %s timed out after %s", e.Node, e.Op, e.Timeout)
}

// Is makes errors.Is(err, context.DeadlineExceeded) true, and ErrInDoubt for
// commands.
func (e *TimeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || (target == ErrInDoubt && e.Op == "command")
}

func fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return ""
	}
	return ssh.FingerprintSHA256(k)
}

func keyType(k ssh.PublicKey) string {
	if k == nil {
		return ""
	}
	return k.Type()
}
