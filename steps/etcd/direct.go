package etcd

import (
	"context"
	cryptotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Direct is the etcd_snapshot_direct kind: the snapshot etcd_snapshot takes
// on a node over SSH, taken instead from the machine running runbook with
// etcd's v3 client (go.etcd.io/etcd/client/v3), so that nothing but etcd's
// client port and its client certificate is needed: no SSH, no etcdctl on
// a node. It is a separate kind, not a mode of etcd_snapshot, because
// etcd_snapshot is a node kind (it only exists inside a phase, once per
// node) while this one acts on this machine and on one etcd member, once:
// a top-level step.
type Direct struct{}

// PlanProbe bounds the dry-run's question to etcd (its Status), within the
// step's timeout: a plan asks, it does not wait.
var PlanProbe = 15 * time.Second

var directSchema = &plans.KindSchema{
	Name:    "etcd_snapshot_direct",
	Summary: "Save an etcd snapshot from the machine running runbook with etcd's v3 client (no SSH): stream it to a temporary file, verify it as etcdutl snapshot status does, publish it atomically with a checksum, apply retention. A top-level step; paths are on this machine. See docs/etcd.md.",
	Target:  plans.TargetLocal,
	Args: []plans.ArgSchema{
		{Name: "dir", Type: cty.String, Required: true, Format: plans.FormatAbsPath, Doc: "Directory for snapshots on this machine (created 0700 if missing)."},
		{Name: "name", Type: cty.String, Doc: "File name; default etcd-snapshot-<UTC time>.db. Retention only counts names matching etcd-snapshot-*.db."},
		{Name: "keep", Type: cty.Number, Default: cty.NumberIntVal(0), Doc: "Keep the newest N snapshots in dir, delete older ones (0: keep all)."},
		{Name: "max_age", Type: cty.String, Format: plans.FormatDuration, Doc: "Delete snapshots in dir older than this (e.g. \"168h\")."},
		{Name: "endpoints", Type: cty.String, Default: cty.StringVal(DefaultEndpoints), Doc: "The etcd member to snapshot: one client URL (a snapshot is one member's state)."},
		{Name: "cacert", Type: cty.String, Default: cty.StringVal(DefaultCACert), Format: plans.FormatAbsPath, Doc: "etcd's CA certificate on this machine."},
		{Name: "cert", Type: cty.String, Default: cty.StringVal(DefaultCert), Format: plans.FormatAbsPath, Doc: "Client certificate on this machine, signed by etcd's CA (kubeadm's server.crt, or the client-only apiserver-etcd-client.crt)."},
		{Name: "key", Type: cty.String, Default: cty.StringVal(DefaultKey), Format: plans.FormatAbsPath, Doc: "Its key on this machine (read, never printed)."},
	},
	Outputs: []plans.OutputSchema{
		{Name: "path", Type: cty.String, Doc: "The published snapshot on this machine."},
		{Name: "sha256", Type: cty.String, Doc: "Its SHA-256 (also in <path>.sha256)."},
		{Name: "revision", Type: cty.Number, Doc: "The etcd revision it holds."},
		{Name: "total_keys", Type: cty.Number, Doc: "How many keys it holds."},
		{Name: "size", Type: cty.Number, Doc: "Its database size in bytes, as etcdutl snapshot status reports it."},
		{Name: "etcd_version", Type: cty.String, Doc: "The version of the etcd that wrote it (etcd 3.6 and later; empty before)."},
	},
	Check: checkDirect,
}

// Schema implements engine.Kind.
func (Direct) Schema() *plans.KindSchema { return directSchema }

func checkDirect(args cty.Value) []plans.ArgError {
	var errs []plans.ArgError
	if v := args.GetAttr("endpoints"); v.IsKnown() && !v.IsNull() {
		if _, err := parseEndpoint(v.AsString()); err != nil {
			errs = append(errs, plans.ArgError{Arg: "endpoints", Summary: "Invalid endpoints", Detail: err.Error()})
		}
	}
	if v := args.GetAttr("name"); v.IsKnown() && !v.IsNull() {
		if n := v.AsString(); n == "" || strings.ContainsRune(n, '/') || n == "." || n == ".." || strings.HasPrefix(n, ".") {
			errs = append(errs, plans.ArgError{Arg: "name", Summary: "Invalid name", Detail: fmt.Sprintf("%q: a file name in dir, without slashes, not hidden.", n)})
		}
	}
	if v := args.GetAttr("keep"); v.IsKnown() && !v.IsNull() {
		if i, _ := v.AsBigFloat().Int64(); i < 0 {
			errs = append(errs, plans.ArgError{Arg: "keep", Summary: "Invalid keep", Detail: "keep is a number of snapshots, 0 or more (0 keeps all)."})
		}
	}
	return errs
}

// parseEndpoint accepts one http(s) URL with a host and port.
func parseEndpoint(s string) (*url.URL, error) {
	if strings.Contains(s, ",") {
		return nil, fmt.Errorf("%q names several endpoints: a snapshot is one member's state, so name exactly one (etcdctl snapshot save refuses several too)", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%q is not an etcd client URL such as \"https://127.0.0.1:2379\"", s)
	}
	return u, nil
}

// directTarget is what one step instance works on.
type directTarget struct {
	dir, name, final, part string
	endpoint               string
	known                  bool // every path and the endpoint are known
}

func targetOf(req *engine.Request) directTarget {
	t := directTarget{dir: req.Args.String("dir"), name: req.Args.String("name"), endpoint: req.Args.String("endpoints")}
	t.known = req.Args.Known("dir") && req.Args.Known("name") && req.Args.Known("endpoints")
	if t.name == "" {
		now := time.Now()
		if req.Program != nil && req.Program.Values != nil {
			now = req.Program.Values.Now
		}
		t.name = "etcd-snapshot-" + now.UTC().Format("20060102-150405") + ".db"
	}
	t.final = filepath.Join(t.dir, t.name)
	t.part = filepath.Join(t.dir, "."+t.name+".part")
	return t
}

func offline(req *engine.Request) bool { return req.Env == nil || req.Env.Offline }

// Plan implements engine.Kind. It only reads: the certificate files, the
// directory, an existing snapshot of the same name, and etcd's Status.
func (Direct) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	if req.Node != nil {
		return nil, fmt.Errorf("%s: etcd_snapshot_direct takes one snapshot from this machine: declare it as a top-level step, outside any phase (etcd_snapshot is the per-node kind)", req.Address)
	}
	t := targetOf(req)
	ca, cert, key := req.Args.String("cacert"), req.Args.String("cert"), req.Args.String("key")
	ch := &engine.Change{Action: engine.ActionChange,
		Summary: fmt.Sprintf("etcd snapshot from %s to %s on this machine", t.endpoint, t.final),
		Details: []string{
			"streamed with etcd's v3 client (Maintenance.Snapshot) to " + t.part + " and fsync'd",
			"verified before it is published: the SHA-256 etcd appends must match, then etcdutl's snapshot status (bbolt integrity, hash, revision, keys, size)",
			"published by rename, with " + t.final + ".sha256 (sha256sum format) beside it; a snapshot that does not verify is deleted, never published",
			fmt.Sprintf("TLS: CA %s, client certificate %s, key %s (files on this machine)", ca, cert, key),
			"equivalent: " + engine.ShellJoin([]string{"etcdctl", "--endpoints=" + t.endpoint, "--cacert=" + ca, "--cert=" + cert, "--key=" + key, "snapshot", "save", t.part}) +
				" && " + engine.ShellJoin([]string{"etcdutl", "snapshot", "status", t.part, "--write-out=json"}),
		},
	}
	if ok, _ := filepath.Match(SnapshotPattern, t.name); !ok && t.known {
		ch.Warnings = append(ch.Warnings, fmt.Sprintf("%s does not match %s: retention will never count or delete it", t.name, SnapshotPattern))
	}
	keep, age := req.Args.Int("keep"), req.Args.Duration("max_age")
	if keep > 0 {
		ch.Details = append(ch.Details, fmt.Sprintf("retention: keep the newest %d %s in %s (this one included), delete the rest with their .sha256 (listed before deleting)", keep, SnapshotPattern, t.dir))
	}
	if age > 0 {
		ch.Details = append(ch.Details, fmt.Sprintf("retention: delete %s in %s older than %s, with their .sha256 (listed before deleting)", SnapshotPattern, t.dir, req.Args.String("max_age")))
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"path": pathVal(t), "sha256": cty.UnknownVal(cty.String),
		"revision": cty.UnknownVal(cty.Number), "total_keys": cty.UnknownVal(cty.Number), "size": cty.UnknownVal(cty.Number),
		"etcd_version": cty.UnknownVal(cty.String)})
	if offline(req) {
		ch.Warnings = append(ch.Warnings, "offline: the certificate files, the directory and etcd at "+t.endpoint+" were not checked")
		return ch, nil
	}
	if !t.known || !req.Args.Known("cacert") || !req.Args.Known("cert") || !req.Args.Known("key") {
		ch.Warnings = append(ch.Warnings, "the endpoint, files or directory are only known after apply: checked then")
		return ch, nil
	}
	if req.Config != nil && req.Config.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Config.Timeout)
		defer cancel()
	}

	// The directory, and this name in it.
	if fi, err := os.Stat(t.dir); errors.Is(err, os.ErrNotExist) {
		ch.Details = append(ch.Details, t.dir+" does not exist yet: created (mode 0700)")
	} else if err != nil {
		ch.Blockers = append(ch.Blockers, err.Error())
	} else if !fi.IsDir() {
		ch.Blockers = append(ch.Blockers, t.dir+" is not a directory")
	}
	if _, err := os.Lstat(t.final); err == nil {
		v, verr := verifyPublished(ctx, t.final)
		if verr != nil {
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s already exists and does not verify (%v): not overwritten; move it away or choose another name", t.final, verr))
			return ch, nil
		}
		// Written by an earlier attempt of this step: done.
		ch.Action, ch.Summary = engine.ActionNoOp, fmt.Sprintf("%s already holds a verified snapshot (revision %d)", t.final, v.Revision)
		ch.Outputs = directOutputs(t.final, v, "")
		return ch, nil
	}
	if stale, _ := filepath.Glob(filepath.Join(t.dir, ".etcd-snapshot-*.db.part")); len(stale) > 0 {
		ch.Warnings = append(ch.Warnings, "left by interrupted runs, never published, not deleted by retention: "+strings.Join(stale, " "))
	}

	// The certificates, then etcd itself.
	tlsCfg, terr := clientTLS(t.endpoint, ca, cert, key)
	if terr != nil {
		ch.Blockers = append(ch.Blockers, terr.Error())
	} else {
		pctx, cancel := context.WithTimeout(ctx, PlanProbe)
		st, err := memberStatus(pctx, t.endpoint, tlsCfg)
		cancel()
		if err != nil {
			ch.Blockers = append(ch.Blockers, err.Error())
		} else {
			ch.Details = append(ch.Details, fmt.Sprintf("etcd %s at %s answers: member %x, revision %d, database %d bytes, leader %x", st.Version, t.endpoint, st.Header.MemberId, st.Header.Revision, st.DbSize, st.Leader))
		}
	}

	// What retention would delete, were the snapshot written now.
	if keep > 0 || age > 0 {
		snaps, err := listSnapshots(t.dir)
		if err != nil {
			ch.Blockers = append(ch.Blockers, fmt.Sprintf("listing %s: %v", t.dir, err))
		} else {
			now := time.Now()
			del := expired(append(snaps, snapFile{Path: t.final, ModTime: now}), keep, age, now, t.final)
			if len(del) == 0 {
				ch.Details = append(ch.Details, fmt.Sprintf("retention: nothing to delete now (%d snapshots in %s)", len(snaps), t.dir))
			} else {
				ch.Details = append(ch.Details, "retention would delete now: "+strings.Join(withChecksums(del), " "))
			}
		}
	}
	return ch, nil
}

func pathVal(t directTarget) cty.Value {
	if !t.known {
		return cty.UnknownVal(cty.String)
	}
	return cty.StringVal(t.final)
}

func directOutputs(final string, v Verified, version string) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"path": cty.StringVal(final), "sha256": cty.StringVal(v.SHA256),
		"revision": cty.NumberIntVal(v.Revision), "total_keys": cty.NumberIntVal(v.TotalKey), "size": cty.NumberIntVal(v.TotalSize),
		"etcd_version": cty.StringVal(version),
	})
}

// verifyPublished checks a published snapshot: its .sha256 names its
// SHA-256, and it verifies.
func verifyPublished(ctx context.Context, final string) (Verified, error) {
	want, err := readChecksum(final + ".sha256")
	if err != nil {
		return Verified{}, err
	}
	v, err := VerifySnapshot(ctx, final)
	if err != nil {
		return v, err
	}
	if v.SHA256 != want {
		return v, fmt.Errorf("%s has SHA-256 %s, its .sha256 says %s", final, v.SHA256, want)
	}
	return v, nil
}

// Apply implements engine.Kind: stream to the temporary name, fsync,
// verify, publish with the checksum, apply retention. Everything is bounded
// by ctx, the step's timeout.
func (Direct) Apply(ctx context.Context, req *engine.Request, ch *engine.Change) (cty.Value, error) {
	if req.Node != nil {
		return cty.NilVal, fmt.Errorf("etcd_snapshot_direct is a top-level step, not a node step")
	}
	t := targetOf(req)
	p := ch.Outputs.GetAttr("path")
	if !p.IsKnown() || p.IsNull() {
		return cty.NilVal, fmt.Errorf("the snapshot's path is not known: dir %q, name %q", t.dir, t.name)
	}
	t.final = p.AsString()
	t.part = filepath.Join(t.dir, "."+filepath.Base(t.final)+".part")
	tlsCfg, err := clientTLS(t.endpoint, req.Args.String("cacert"), req.Args.String("cert"), req.Args.String("key"))
	if err != nil {
		return cty.NilVal, err
	}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return cty.NilVal, err
	}
	version, n, err := saveSnapshot(ctx, t.endpoint, tlsCfg, t.part)
	if err != nil {
		os.Remove(t.part)
		return cty.NilVal, err
	}
	v, err := verifyAndPublish(ctx, t.part, t.final)
	if err != nil {
		return cty.NilVal, fmt.Errorf("the snapshot from %s (%d bytes received) was not published: %w", t.endpoint, n, err)
	}
	req.Emit("snapshot_saved", fmt.Sprintf("%s: revision %d, %d keys, %d bytes, sha256 %s", t.final, v.Revision, v.TotalKey, v.TotalSize, v.SHA256), nil)
	if err := localRetention(req, t.dir, t.final); err != nil {
		return cty.NilVal, err
	}
	return directOutputs(t.final, v, version), nil
}

// localRetention deletes old snapshots in dir and their checksums, never
// the one just written, listing them first.
func localRetention(req *engine.Request, dir, current string) error {
	keep, age := req.Args.Int("keep"), req.Args.Duration("max_age")
	if keep <= 0 && age <= 0 {
		return nil
	}
	snaps, err := listSnapshots(dir)
	if err != nil {
		return fmt.Errorf("retention: listing %s: %w", dir, err)
	}
	del := withChecksums(expired(snaps, keep, age, time.Now(), current))
	if len(del) == 0 {
		return nil
	}
	req.Emit("retention", "deleting old snapshots: "+strings.Join(del, " "), nil)
	if err := removeAll(del); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	return nil
}

// clientTLS builds the client's TLS from files on this machine; errors name
// the file. An http:// endpoint needs none.
func clientTLS(endpoint, caFile, certFile, keyFile string) (*cryptotls.Config, error) {
	u, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "http" {
		return nil, nil
	}
	for _, f := range []struct{ what, path string }{{"cacert", caFile}, {"cert", certFile}, {"key", keyFile}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.what, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s %s is not a regular file", f.what, f.path)
		}
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cacert %s holds no PEM certificate", caFile)
	}
	pair, err := cryptotls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cert %s and key %s: %w", certFile, keyFile, err)
	}
	return &cryptotls.Config{RootCAs: pool, Certificates: []cryptotls.Certificate{pair}, MinVersion: cryptotls.VersionTLS12}, nil
}

// newClient connects to one etcd member; ctx bounds the client's life.
func newClient(ctx context.Context, endpoint string, tlsCfg *cryptotls.Config) (*clientv3.Client, error) {
	dial := 10 * time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < dial {
		dial = time.Until(d)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, TLS: tlsCfg, DialTimeout: dial, Context: ctx,
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", endpoint, err)
	}
	return cli, nil
}

// memberStatus asks one member for its status: the dry-run's check that
// the endpoint answers with these certificates.
func memberStatus(ctx context.Context, endpoint string, tlsCfg *cryptotls.Config) (*clientv3.StatusResponse, error) {
	cli, err := newClient(ctx, endpoint, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("etcd at %s does not answer: %w", endpoint, err)
	}
	return st, nil
}

// saveSnapshot streams the member's snapshot into part (created 0600,
// replacing a stale one) and fsyncs it. It returns the etcd version the
// stream reports and the bytes written.
func saveSnapshot(ctx context.Context, endpoint string, tlsCfg *cryptotls.Config, part string) (string, int64, error) {
	cli, err := newClient(ctx, endpoint, tlsCfg)
	if err != nil {
		return "", 0, err
	}
	defer cli.Close()
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("asking etcd at %s for a snapshot: %w", endpoint, err)
	}
	defer resp.Snapshot.Close()
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return resp.Version, 0, err
	}
	cw := &countWriter{w: f}
	_, cpErr := io.Copy(cw, resp.Snapshot)
	syncErr := f.Sync()
	closeErr := f.Close()
	switch {
	case cw.err != nil:
		return resp.Version, cw.n, fmt.Errorf("writing %s: %w", part, cw.err)
	case cpErr != nil:
		return resp.Version, cw.n, fmt.Errorf("receiving the snapshot from etcd at %s (%d bytes in): %w", endpoint, cw.n, cpErr)
	case syncErr != nil || closeErr != nil:
		return resp.Version, cw.n, fmt.Errorf("writing %s: %w", part, errors.Join(syncErr, closeErr))
	}
	return resp.Version, cw.n, nil
}
