// Package etcd implements the etcd_snapshot and etcd_restore step kinds: the
// seed's etcdctl/etcdutl procedures on a control-plane node, made safe:
// snapshots are verified and published atomically with a checksum; restores
// refuse a relative data dir, never delete the old data, and verify the
// result (field case F07).
//
// It also implements etcd_snapshot_direct, the same snapshot taken from the
// machine running runbook with etcd's v3 client instead of over SSH, and
// verified in process with etcdutl's snapshot status (VerifySnapshot).
package etcd

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
)

// kubeadm's etcd layout.
const (
	DefaultEndpoints = "https://127.0.0.1:2379"
	DefaultCACert    = "/etc/kubernetes/pki/etcd/ca.crt"
	DefaultCert      = "/etc/kubernetes/pki/etcd/server.crt"
	DefaultKey       = "/etc/kubernetes/pki/etcd/server.key"
	DefaultManifests = "/etc/kubernetes/manifests"
)

var tlsArgs = []plans.ArgSchema{
	{Name: "endpoints", Type: cty.String, Default: cty.StringVal(DefaultEndpoints), Doc: "etcd client endpoints."},
	{Name: "cacert", Type: cty.String, Default: cty.StringVal(DefaultCACert), Format: plans.FormatAbsPath, Doc: "CA certificate on the node."},
	{Name: "cert", Type: cty.String, Default: cty.StringVal(DefaultCert), Format: plans.FormatAbsPath, Doc: "Client certificate on the node."},
	{Name: "key", Type: cty.String, Default: cty.StringVal(DefaultKey), Format: plans.FormatAbsPath, Doc: "Client key on the node."},
	{Name: "tool", Type: cty.String, Default: cty.StringVal("auto"), OneOf: []string{"auto", "etcdctl", "etcdutl"}, Doc: "Which tool handles offline snapshot work; auto picks etcdutl for etcd 3.5 and later."},
}

// Snapshot is the etcd_snapshot kind.
type Snapshot struct{}

var snapshotSchema = &plans.KindSchema{
	Name:    "etcd_snapshot",
	Summary: "Save an etcd snapshot on a control-plane node, verify it, publish it atomically with a checksum, apply retention.",
	Target:  plans.TargetNode,
	Args: append([]plans.ArgSchema{
		{Name: "dir", Type: cty.String, Required: true, Format: plans.FormatAbsPath, Doc: "Directory for snapshots on the node."},
		{Name: "name", Type: cty.String, Doc: "File name; default etcd-snapshot-<UTC time>.db."},
		{Name: "keep", Type: cty.Number, Default: cty.NumberIntVal(0), Doc: "Keep the newest N snapshots in dir, delete older ones (0: keep all)."},
		{Name: "max_age", Type: cty.String, Format: plans.FormatDuration, Doc: "Delete snapshots in dir older than this (e.g. \"168h\")."},
		{Name: "copy_to", Type: cty.String, Doc: "Also copy the snapshot to this directory on the machine running runbook, checksum verified."},
	}, tlsArgs...),
	Outputs: []plans.OutputSchema{
		{Name: "path", Type: cty.String, Doc: "The published snapshot on the node."},
		{Name: "sha256", Type: cty.String, Doc: "Its SHA-256."},
		{Name: "revision", Type: cty.Number, Doc: "The etcd revision it holds."},
		{Name: "total_keys", Type: cty.Number, Doc: "How many keys it holds."},
		{Name: "size", Type: cty.Number, Doc: "Its size in bytes."},
		{Name: "copied_to", Type: cty.String, Doc: "The local copy (with copy_to), or empty."},
	},
}

// Schema implements engine.Kind.
func (Snapshot) Schema() *plans.KindSchema { return snapshotSchema }

func tls(req *engine.Request) []string {
	return []string{"--endpoints=" + req.Args.String("endpoints"), "--cacert=" + req.Args.String("cacert"), "--cert=" + req.Args.String("cert"), "--key=" + req.Args.String("key")}
}

// statusTool is the tool for offline snapshot work when the etcd version
// is not known (the plan's tool, or etcdutl).
func statusTool(req *engine.Request) string {
	return toolFor(req, "")
}

// toolFor picks the offline snapshot tool for the etcd static pod manifest:
// the plan's choice, else by the image's version. etcd 3.5 moved snapshot
// restore and status to etcdutl (3.6 removed them from etcdctl); older etcd
// has only etcdctl.
func toolFor(req *engine.Request, manifest string) string {
	if t := req.Args.String("tool"); t != "auto" {
		return t
	}
	if m := etcdImage.FindStringSubmatch(manifest); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major < 3 || (major == 3 && minor < 5) {
			return "etcdctl"
		}
	}
	return "etcdutl"
}

var etcdImage = regexp.MustCompile(`(?m)^\s*image:\s*\S*etcd:v?(\d+)\.(\d+)`)

// Plan implements engine.Kind.
func (Snapshot) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	dir := req.Args.String("dir")
	name := req.Args.String("name")
	if name == "" {
		name = "etcd-snapshot-" + req.Program.Values.Now.UTC().Format("20060102-150405") + ".db"
	}
	final := path.Join(dir, name)
	part := path.Join(dir, "."+name+".part")
	cmds := []engine.Command{
		req.Cmd("mkdir", "-p", dir),
		req.Cmd(append([]string{"etcdctl", "snapshot", "save", part}, tls(req)...)...),
		statusCmd(req, statusTool(req), part),
		req.Cmd("sh", "-c", `sha256sum "$1" | sed "s|  .*|  $(basename "$2")|" > "$2.sha256.part" && mv "$1" "$2" && mv "$2.sha256.part" "$2.sha256"`, "sh", part, final),
	}
	ch := &engine.Change{Action: engine.ActionChange, Summary: "etcd snapshot of " + req.NodeName() + " to " + final,
		Commands: engine.Shells(cmds...),
		Details:  []string{"written as " + part + ", verified (hash, revision, keys, size), then renamed with its .sha256 beside it"},
	}
	if k := req.Args.Int("keep"); k > 0 {
		ch.Details = append(ch.Details, fmt.Sprintf("retention: keep the newest %d etcd-snapshot-*.db in %s, delete the rest (listed before deleting)", k, dir))
	}
	if a := req.Args.String("max_age"); a != "" {
		ch.Details = append(ch.Details, fmt.Sprintf("retention: delete etcd-snapshot-*.db in %s older than %s (listed before deleting)", dir, a))
	}
	copied := ""
	if c := req.Args.String("copy_to"); c != "" {
		copied = localCopyPath(c, name)
		ch.Commands = append(ch.Commands, req.Cmd("cat", final).Shell()+" > "+engine.Quote(copied))
		ch.Details = append(ch.Details, "copied to "+copied+" on this machine (written as .part, SHA-256 checked against the node's on arrival, then renamed with its .sha256)")
	}
	ch.Outputs = cty.ObjectVal(map[string]cty.Value{"path": cty.StringVal(final), "sha256": cty.UnknownVal(cty.String),
		"revision": cty.UnknownVal(cty.Number), "total_keys": cty.UnknownVal(cty.Number), "size": cty.UnknownVal(cty.Number),
		"copied_to": cty.StringVal(copied)})
	return ch, nil
}

// Restore is the etcd_restore kind.
type Restore struct{}

var restoreSchema = &plans.KindSchema{
	Name:    "etcd_restore",
	Summary: "Restore etcd from a verified snapshot into a fresh data dir, keep the old one, switch the etcd manifest, verify.",
	Target:  plans.TargetNode,
	Args: append([]plans.ArgSchema{
		{Name: "snapshot", Type: cty.String, Required: true, Format: plans.FormatAbsPath, Doc: "The snapshot file on the node; its .sha256 must match."},
		{Name: "data_dir", Type: cty.String, Required: true, Format: plans.FormatAbsPath, Doc: "A new, absolute data directory (it must not exist)."},
		{Name: "manifests_dir", Type: cty.String, Default: cty.StringVal(DefaultManifests), Format: plans.FormatAbsPath, Doc: "Static pod manifests."},
		{Name: "stash_dir", Type: cty.String, Default: cty.StringVal("/etc/kubernetes/runbook-stash"), Format: plans.FormatAbsPath, Doc: "Where the apiserver and etcd manifests wait while etcd is restored (outside the manifests dir, so the kubelet stops them)."},
		{Name: "canary_key", Type: cty.String, Doc: "An etcd key written before the snapshot that must exist after the restore."},
	}, tlsArgs...),
	Outputs: []plans.OutputSchema{
		{Name: "old_data_dir", Type: cty.String, Doc: "Where the previous data dir was kept."},
		{Name: "revision", Type: cty.Number, Doc: "The revision etcd reports after the restore."},
		{Name: "snapshot_time", Type: cty.String, Doc: "When the snapshot was written (its file time, RFC 3339)."},
		{Name: "snapshot_age_seconds", Type: cty.Number, Doc: "How old the snapshot was when etcd came back on it: the data a restore loses."},
	},
	NoContinue: true,
}

// Schema implements engine.Kind.
func (Restore) Schema() *plans.KindSchema { return restoreSchema }

// Plan implements engine.Kind.
func (Restore) Plan(ctx context.Context, req *engine.Request) (*engine.Change, error) {
	snap, dd := req.Args.String("snapshot"), req.Args.String("data_dir")
	md := req.Args.String("manifests_dir")
	ch := &engine.Change{Action: engine.ActionChange, Summary: fmt.Sprintf("restore etcd on %s from %s into %s", req.NodeName(), snap, dd),
		Details: []string{
			"refuses a snapshot whose checksum or status does not verify, before anything is stopped",
			"restores into the new data dir while etcd still runs on the old one (the restore checks the hash etcd appends to the snapshot): a snapshot that does not restore is refused before anything is stopped",
			"the current data dir is read from the etcd manifest and kept as it is (never deleted)",
			"waits, bounded, for etcd and then the apiserver to stop and start at each manifest move",
			"verifies: etcd healthy, revision at least the snapshot's" + canary(req),
		},
	}
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err == engine.ErrOffline {
		ch.Commands = restoreCommands(req, statusTool(req), "<current data dir>")
		ch.Warnings = []string{"offline: the current data dir and etcd version are read on the node when the plan runs online"}
		return ch, nil
	} else if err != nil {
		return nil, err
	}
	res, err := r.Run(ctx, req.Cmd("cat", path.Join(md, "etcd.yaml")))
	if err != nil {
		return nil, fmt.Errorf("reading the etcd manifest: %w", err)
	}
	old := CurrentDataDir(res.Stdout)
	if res.ExitCode != 0 || old == "" {
		ch.Commands = restoreCommands(req, statusTool(req), "<current data dir>")
		ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s/etcd.yaml on %s is missing or names no --data-dir", md, req.NodeName()))
		return ch, nil
	}
	tool := toolFor(req, res.Stdout)
	ch.Commands = restoreCommands(req, tool, old)
	ch.Details = append(ch.Details, "current data dir: "+old+" (kept)", "offline snapshot tool: "+tool+" (by the etcd image in the manifest)")
	if res, err := r.Run(ctx, req.Cmd("test", "!", "-e", dd)); err == nil && res.ExitCode != 0 {
		ch.Blockers = append(ch.Blockers, fmt.Sprintf("%s already exists on %s: restore into a new directory", dd, req.NodeName()))
	}
	ch.Blockers = append(ch.Blockers, checkSnapshot(ctx, req, r, tool, snap, &ch.Warnings)...)
	return ch, nil
}

// checkSnapshot is the dry-run's read-only look at the snapshot: a file
// that is there must match its .sha256 and read as a snapshot; one that is
// not there yet may come from an earlier step of the same plan (a drill's
// etcd_snapshot), so its absence is a warning, checked again by Apply.
func checkSnapshot(ctx context.Context, req *engine.Request, r engine.Runner, tool, snap string, warnings *[]string) []string {
	res, err := r.Run(ctx, req.Cmd("test", "-f", snap))
	if err != nil {
		return []string{fmt.Sprintf("checking %s on %s: %v", snap, req.NodeName(), err)}
	}
	if res.ExitCode != 0 {
		*warnings = append(*warnings, fmt.Sprintf("%s is not on %s now: an earlier step must write it, or the restore will be refused", snap, req.NodeName()))
		return nil
	}
	res, err = r.Run(ctx, checksumCmd(req, snap))
	if err != nil {
		return []string{fmt.Sprintf("checking %s on %s: %v", snap, req.NodeName(), err)}
	}
	if res.ExitCode != 0 {
		return []string{fmt.Sprintf("%s on %s does not match its .sha256 (or has none): %s", snap, req.NodeName(), firstLine(res.Stderr, res.Stdout))}
	}
	res, err = r.Run(ctx, statusCmd(req, tool, snap))
	if err != nil {
		return []string{fmt.Sprintf("checking %s on %s: %v", snap, req.NodeName(), err)}
	}
	if res.ExitCode != 0 {
		return []string{fmt.Sprintf("%s on %s is not a readable snapshot: %s", snap, req.NodeName(), firstLine(res.Stderr, res.Stdout))}
	}
	return nil
}

// checksumCmd checks a snapshot against the .sha256 file beside it.
func checksumCmd(req *engine.Request, snap string) engine.Command {
	return req.Cmd("sh", "-c", `cd "$(dirname "$1")" && sha256sum -c "$(basename "$1").sha256"`, "sh", snap)
}

// statusCmd reads a snapshot's hash, revision, keys and size.
func statusCmd(req *engine.Request, tool, snap string) engine.Command {
	return req.Cmd(tool, "snapshot", "status", snap, "--write-out=json")
}

// firstLine is the first non-empty line of the outputs, for one-line reasons.
func firstLine(outs ...string) string {
	for _, o := range outs {
		for _, l := range strings.Split(o, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
	}
	return "no output"
}

// restoreCommands are the commands a restore runs, in order, as the
// dry-run shows them (Apply runs the same ones, with the owner read on the
// node).
func restoreCommands(req *engine.Request, tool, old string) []string {
	snap, dd := req.Args.String("snapshot"), req.Args.String("data_dir")
	md, stash := req.Args.String("manifests_dir"), req.Args.String("stash_dir")
	etcdctl := func(args ...string) engine.Command {
		return req.Cmd(append(append([]string{"etcdctl"}, args...), tls(req)...)...)
	}
	cmds := []engine.Command{
		req.Cmd("cat", path.Join(md, "etcd.yaml")),
		checksumCmd(req, snap),
		statusCmd(req, tool, snap),
		req.Cmd("test", "!", "-e", dd),
		req.Cmd("stat", "-c", "%Y", snap),
		req.Cmd("stat", "-c", "%u:%g", old),
		req.Cmd(tool, "snapshot", "restore", snap, "--data-dir="+dd),
		req.Cmd("sh", "-c", `chown -R "$1" "$2" && chmod 700 "$2"`, "sh", ownerOf(old), dd),
		req.Cmd("mkdir", "-p", stash),
		req.Cmd("mv", path.Join(md, "kube-apiserver.yaml"), path.Join(stash, "kube-apiserver.yaml")),
		req.Cmd("mv", path.Join(md, "etcd.yaml"), path.Join(stash, "etcd.yaml")),
		etcdctl("endpoint", "health", "--command-timeout=2s"),
	}
	written := len(cmds) // the edited manifest, written from stdin
	cmds = append(cmds,
		req.Cmd("sh", "-c", `cat > "$1.new" && mv "$1.new" "$1"`, "sh", path.Join(stash, "etcd.yaml")),
		req.Cmd("mv", path.Join(stash, "etcd.yaml"), path.Join(md, "etcd.yaml")),
		etcdctl("endpoint", "health", "--command-timeout=2s"),
		etcdctl("endpoint", "status", "--write-out=json"),
	)
	if k := req.Args.String("canary_key"); k != "" {
		cmds = append(cmds, etcdctl("get", k, "--print-value-only"))
	}
	cmds = append(cmds, req.Cmd("mv", path.Join(stash, "kube-apiserver.yaml"), path.Join(md, "kube-apiserver.yaml")))
	out := engine.Shells(cmds...)
	out[written] += "   # stdin: the etcd manifest with " + old + " replaced by " + dd
	return out
}

func canary(req *engine.Request) string {
	if k := req.Args.String("canary_key"); k != "" {
		return ", canary key " + k + " present"
	}
	return ""
}

// ownerOf is how the dry-run names the data dir's owner, read on the node
// when the restore runs.
func ownerOf(dir string) string {
	if strings.HasPrefix(dir, "<") {
		return "<owner of the current data dir>"
	}
	return "<owner of " + dir + ">"
}
