// Package sshconn is runbook's SSH transport to cluster nodes.
//
// It uses golang.org/x/crypto/ssh with identities from ssh-agent
// ($SSH_AUTH_SOCK) and identity files, honours ssh_config files (the plan's,
// then ~/.ssh/config; see Pool.Resolve for the precedence), verifies host keys
// strictly against known_hosts (hashed and [host]:port entries included) and
// tunnels through a ProxyJump bastion.
//
// A Pool keeps one connection per node for a run; each Command runs in a new
// session on it. Connections send keepalive@openssh.com requests and are
// declared lost after KeepaliveMaxMissed unanswered ones. Errors are typed:
//
//   - *HostKeyMismatchError: the node presented a key other than the recorded
//     one(s); shows expected and presented SHA256 fingerprints and the
//     known_hosts file:line. Never accepted automatically; TrustHost replaces
//     the recorded key as an explicit action.
//   - *UnknownHostError: no known_hosts entry (unless Config.TrustOnFirstUse,
//     which appends the key, logs a warning and calls the pool's trust
//     callback; only for hosts never seen).
//   - *AuthError: no identity accepted.
//   - *TimeoutError: connecting or a command took too long.
//   - *ConnectionLostError (errors.Is ErrConnectionLost): the connection
//     dropped; when the command had started, its outcome is in doubt
//     (errors.Is ErrInDoubt).
//
// A command that exits non-zero is not an error: Run returns a Result with
// ExitCode (or Signal). Sudo is always `sudo -n`, never interactive; a PTY is
// requested only when the node's Config.PTY asks for one. Pool.Preflight
// checks reachability, host key, authentication and `sudo -n true` without
// changing anything.
//
// The remote login shell must be a POSIX shell: command lines are built with
// POSIX single-quote quoting (Quote, ShellJoin).
//
// Nothing in this package logs key material, passwords or command output;
// command lines are logged at Debug level only, and Command.Label replaces a
// command line that contains a secret.
package sshconn
