package sshconn

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TrustEvent describes a host key added to known_hosts by trust-on-first-use.
type TrustEvent struct {
	Node        string
	Host        string // known_hosts name
	KeyType     string
	Fingerprint string
	File        string
}

// hostKeyAlgos maps a recorded key type to the host-key algorithms that
// yield it, so the server is asked for a key type known_hosts has (otherwise a
// server with several host keys may present one we have not recorded).
func hostKeyAlgos(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	default:
		return []string{keyType}
	}
}

// preferredHostKeyAlgos is the order asked of a host with no known key, so
// that trust-on-first-use records the same kind of key OpenSSH would.
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// hostKeyChecker verifies one connection's host key against known_hosts.
type hostKeyChecker struct {
	pool     *Pool
	node     string
	name     string   // known_hosts name
	files    []string // configured files (the first one is written)
	existing []string // configured files that exist
	tofu     bool
	cb       ssh.HostKeyCallback

	presented ssh.PublicKey
	err       error // typed error returned by the last check
	known     []knownhosts.KnownKey
}

func (p *Pool) newHostKeyChecker(node, name string, files []string, tofu bool) (*hostKeyChecker, error) {
	h := &hostKeyChecker{pool: p, node: node, name: name, files: files, tofu: tofu}
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *hostKeyChecker) load() error {
	h.existing = h.existing[:0]
	for _, f := range h.files {
		if _, err := os.Stat(f); err == nil {
			h.existing = append(h.existing, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("known_hosts: %w", err)
		}
	}
	cb, err := knownhosts.New(h.existing...)
	if err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	h.cb = cb
	// Ask the database for the keys it has for this host.
	h.known = nil
	var ke *knownhosts.KeyError
	if err := cb(h.dialName(), dummyAddr{}, probeKey()); errors.As(err, &ke) {
		h.known = ke.Want
	}
	return nil
}

// dialName turns the known_hosts name back into host:port for knownhosts.
func (h *hostKeyChecker) dialName() string {
	if strings.HasPrefix(h.name, "[") {
		return h.name[1:strings.LastIndex(h.name, "]")] + ":" + h.name[strings.LastIndex(h.name, ":")+1:]
	}
	return net.JoinHostPort(h.name, "22")
}

// algorithms returns the host key algorithms to offer.
func (h *hostKeyChecker) algorithms() []string {
	if len(h.known) == 0 {
		return preferredHostKeyAlgos
	}
	var out []string
	seen := map[string]bool{}
	// Keep the preferred order among known types.
	for _, pref := range preferredHostKeyAlgos {
		for _, k := range h.known {
			for _, a := range hostKeyAlgos(k.Key.Type()) {
				if a == pref && !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
		}
	}
	for _, k := range h.known {
		for _, a := range hostKeyAlgos(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func (h *hostKeyChecker) knownKeys() []KnownKey {
	out := make([]KnownKey, 0, len(h.known))
	for _, k := range h.known {
		out = append(out, KnownKey{Type: k.Key.Type(), Fingerprint: ssh.FingerprintSHA256(k.Key), File: k.Filename, Line: k.Line})
	}
	return out
}

// check is the ssh.HostKeyCallback.
func (h *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	h.presented = key
	err := h.cb(h.dialName(), remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		h.err = &HostKeyMismatchError{Node: h.node, Host: h.name, TrustFile: h.trustFile(), Presented: key, Revoked: true, Known: h.knownKeys()}
	case errors.As(err, &ke) && len(ke.Want) > 0:
		known := make([]KnownKey, 0, len(ke.Want))
		for _, k := range ke.Want {
			known = append(known, KnownKey{Type: k.Key.Type(), Fingerprint: ssh.FingerprintSHA256(k.Key), File: k.Filename, Line: k.Line})
		}
		h.err = &HostKeyMismatchError{Node: h.node, Host: h.name, TrustFile: h.trustFile(), Presented: key, Known: known}
	case errors.As(err, &ke):
		if h.tofu && len(h.files) > 0 {
			if terr := h.pool.trustOnFirstUse(h, key); terr != nil {
				h.err = terr
				return terr
			}
			return nil
		}
		h.err = &UnknownHostError{Node: h.node, Host: h.name, TrustFile: h.trustFile(), Presented: key, KnownHostsFiles: h.existing}
	default:
		h.err = fmt.Errorf("node %s: known_hosts: %w", h.node, err)
	}
	return h.err
}

func (h *hostKeyChecker) trustFile() string {
	if len(h.files) == 0 {
		return ""
	}
	return h.files[0]
}

// handshakeError maps a handshake failure to the typed host key error when
// the host key check caused it.
func (h *hostKeyChecker) handshakeError(err error) error {
	if h.err != nil {
		return h.err
	}
	if err != nil && strings.Contains(err.Error(), "no common algorithm for host key") && len(h.known) > 0 {
		return &HostKeyMismatchError{Node: h.node, Host: h.name, TrustFile: h.trustFile(), Known: h.knownKeys(),
			Detail: "the server offers none of the key types recorded for it"}
	}
	return nil
}

func (p *Pool) trustOnFirstUse(h *hostKeyChecker, key ssh.PublicKey) error {
	p.khMu.Lock()
	defer p.khMu.Unlock()
	file := h.files[0]
	// Re-check under the lock: another connection may have recorded a
	// (possibly different) key for this host meanwhile.
	if err := h.load(); err != nil {
		return err
	}
	if err := h.cb(h.dialName(), dummyAddr{}, key); err == nil {
		return nil
	} else if ke := (*knownhosts.KeyError)(nil); errors.As(err, &ke) && len(ke.Want) > 0 {
		return &HostKeyMismatchError{Node: h.node, Host: h.name, TrustFile: h.trustFile(), Presented: key, Known: h.knownKeys()}
	}
	if err := appendKnownHost(file, h.name, key); err != nil {
		return fmt.Errorf("node %s: trust on first use: %w", h.node, err)
	}
	ev := TrustEvent{Node: h.node, Host: h.name, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), File: file}
	p.log.Warn("trusted host key on first use", "node", ev.Node, "host", ev.Host, "key_type", ev.KeyType,
		"fingerprint", ev.Fingerprint, "known_hosts", ev.File)
	if p.onTrust != nil {
		p.onTrust(ev)
	}
	return nil
}

func appendKnownHost(file, name string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
	// Make sure we start on a fresh line.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TrustHost records key as the one host key of host in knownHostsFile,
// replacing every entry for exactly that host (plain or hashed, including
// the host's name inside a multi-name line) and appending
// "host keytype base64". host is "name", "name:port" or "[name]:port"; port 22
// is written without brackets. Wildcard patterns, @cert-authority and
// @revoked lines are left alone. The file is rewritten atomically and created
// (mode 0600) if missing. It returns the entries it removed, so that the
// caller can log the old and new fingerprints: this is the explicit, logged
// action behind `runbook trust-host`.
func TrustHost(knownHostsFile, host string, key ssh.PublicKey) (replaced []KnownKey, err error) {
	if key == nil {
		return nil, errors.New("TrustHost: nil key")
	}
	name := knownhosts.Normalize(host)
	data, err := os.ReadFile(knownHostsFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		kept, removed := dropHost(line, name)
		if removed != nil {
			removed.File, removed.Line = knownHostsFile, lineNo
			replaced = append(replaced, *removed)
		}
		if kept != "" || strings.TrimSpace(line) == "" {
			out.WriteString(kept)
			out.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out.WriteString(knownhosts.Line([]string{name}, key))
	out.WriteByte('\n')

	mode := os.FileMode(0o600)
	if st, err := os.Stat(knownHostsFile); err == nil {
		mode = st.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(knownHostsFile), 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(knownHostsFile), ".known_hosts-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), knownHostsFile); err != nil {
		return nil, err
	}
	return replaced, nil
}

// dropHost removes name from one known_hosts line. It returns the line to
// keep ("" to drop it) and the removed key, if any.
func dropHost(line, name string) (string, *KnownKey) {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || trimmed[0] == '#' || trimmed[0] == '@' {
		return line, nil
	}
	fields := strings.Fields(trimmed)
	if len(fields) < 3 {
		return line, nil
	}
	marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(trimmed))
	if err != nil || marker != "" || key == nil {
		return line, nil
	}
	var keep []string
	hit := false
	for _, h := range hosts {
		if hostEntryIs(h, name) {
			hit = true
			continue
		}
		keep = append(keep, h)
	}
	if !hit {
		return line, nil
	}
	removed := &KnownKey{Type: key.Type(), Fingerprint: ssh.FingerprintSHA256(key)}
	if len(keep) == 0 {
		return "", removed
	}
	// Rebuild the line with the remaining names and the original rest.
	rest := strings.TrimSpace(strings.TrimPrefix(trimmed, fields[0]))
	return strings.Join(keep, ",") + " " + rest, removed
}

// hostEntryIs reports whether one known_hosts host entry (plain or hashed)
// names exactly name (already normalized).
func hostEntryIs(entry, name string) bool {
	if strings.HasPrefix(entry, "|1|") {
		parts := strings.Split(entry[3:], "|")
		if len(parts) != 2 {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(parts[0])
		sum, err2 := base64.StdEncoding.DecodeString(parts[1])
		if err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(name))
		return hmac.Equal(mac.Sum(nil), sum)
	}
	if strings.ContainsAny(entry, "*?!") {
		return false
	}
	return knownhosts.Normalize(entry) == name
}

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "0.0.0.0:0" }
