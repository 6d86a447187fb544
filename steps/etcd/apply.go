package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/steps/internal/noderun"
	"github.com/zclconf/go-cty/cty"
	"k8s.io/client-go/kubernetes"
)

// Status is what `etcdutl snapshot status -w json` reports.
type Status struct {
	Hash      uint64 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int64  `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

func snapshotStatus(ctx context.Context, req *engine.Request, r engine.Runner, tool, file string) (Status, error) {
	var st Status
	res, err := noderun.Run(ctx, req, r, statusCmd(req, tool, file))
	if err != nil {
		return st, fmt.Errorf("snapshot %s does not verify: %w", file, err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &st); err != nil {
		return st, fmt.Errorf("snapshot %s: unreadable status %q: %w", file, noderun.LastLine(res.Stdout), err)
	}
	if st.Revision <= 0 || st.TotalKey <= 0 {
		return st, fmt.Errorf("snapshot %s looks empty (revision %d, %d keys)", file, st.Revision, st.TotalKey)
	}
	return st, nil
}

// Apply implements engine.Kind: save under a temporary name, verify, then
// publish the file and its checksum by renaming, then apply retention.
func (Snapshot) Apply(ctx context.Context, req *engine.Request, ch *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	final := ch.Outputs.GetAttr("path").AsString()
	dir := req.Args.String("dir")
	part := path.Join(dir, "."+path.Base(final)+".part")
	if _, err := noderun.Run(ctx, req, r, req.Cmd("mkdir", "-p", dir)); err != nil {
		return cty.NilVal, err
	}
	if _, err := noderun.Run(ctx, req, r, req.Cmd(append([]string{"etcdctl", "snapshot", "save", part}, tls(req)...)...)); err != nil {
		return cty.NilVal, err
	}
	st, err := snapshotStatus(ctx, req, r, statusTool(req), part)
	if err != nil {
		_, _ = r.Run(context.WithoutCancel(ctx), req.Cmd("rm", "-f", part))
		return cty.NilVal, err
	}
	publish := req.Cmd("sh", "-c", `sha256sum "$1" | sed "s|  .*|  $(basename "$2")|" > "$2.sha256.part" && mv "$1" "$2" && mv "$2.sha256.part" "$2.sha256"`, "sh", part, final)
	if _, err := noderun.Run(ctx, req, r, publish); err != nil {
		return cty.NilVal, err
	}
	res, err := noderun.Run(ctx, req, r, req.Cmd("cat", final+".sha256"))
	if err != nil {
		return cty.NilVal, err
	}
	sum := strings.Fields(res.Stdout)
	if len(sum) == 0 {
		return cty.NilVal, fmt.Errorf("%s.sha256 is empty", final)
	}
	req.Emit("snapshot_saved", fmt.Sprintf("%s: revision %d, %d keys, %d bytes, sha256 %s", final, st.Revision, st.TotalKey, st.TotalSize, sum[0]), nil)
	copied := ""
	if c := req.Args.String("copy_to"); c != "" {
		copied = localCopyPath(c, path.Base(final))
		if err := copyOff(ctx, req, r, final, sum[0], copied); err != nil {
			return cty.NilVal, err
		}
	}
	if err := retention(ctx, req, r, dir, final); err != nil {
		return cty.NilVal, err
	}
	return cty.ObjectVal(map[string]cty.Value{
		"path": cty.StringVal(final), "sha256": cty.StringVal(sum[0]),
		"revision": cty.NumberIntVal(st.Revision), "total_keys": cty.NumberIntVal(st.TotalKey), "size": cty.NumberIntVal(st.TotalSize),
		"copied_to": cty.StringVal(copied),
	}), nil
}

// retention deletes old snapshots (and their checksums), never the one
// just written; it lists what it deletes.
func retention(ctx context.Context, req *engine.Request, r engine.Runner, dir, keep string) error {
	n, age := req.Args.Int("keep"), req.Args.Duration("max_age")
	if n <= 0 && age <= 0 {
		return nil
	}
	res, err := noderun.Run(ctx, req, r, req.Cmd("find", dir, "-maxdepth", "1", "-name", "etcd-snapshot-*.db", "-printf", "%T@ %p\n"))
	if err != nil {
		return err
	}
	var snaps []snapFile
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		ts, p, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		snaps = append(snaps, snapFile{Path: p, ModTime: time.Unix(int64(f), 0)})
	}
	del := withChecksums(expired(snaps, n, age, time.Now(), keep))
	if len(del) == 0 {
		return nil
	}
	req.Emit("retention", "deleting old snapshots: "+strings.Join(del, " "), nil)
	_, err = noderun.Run(ctx, req, r, req.Cmd(append([]string{"rm", "-f", "--"}, del...)...))
	return err
}

// WaitBound bounds each wait of a restore (a component stopping or
// starting).
var WaitBound = 2 * time.Minute

// Apply implements engine.Kind, field case F07: verify, stop, restore into
// a fresh directory, own it as etcd's data dir was owned, switch the
// manifest, start, verify. If anything fails before etcd is pointed at the
// new data, the original manifests go back, so the cluster returns on its
// old data; the old data dir is never touched.
func (Restore) Apply(ctx context.Context, req *engine.Request, _ *engine.Change) (cty.Value, error) {
	r, err := req.Env.NodeRunner(ctx, req.Node)
	if err != nil {
		return cty.NilVal, err
	}
	kc, _ := req.Env.KubeClient(ctx)
	snap, dd := req.Args.String("snapshot"), req.Args.String("data_dir")
	md, stash := req.Args.String("manifests_dir"), req.Args.String("stash_dir")
	etcdManifest, apiManifest := path.Join(md, "etcd.yaml"), path.Join(md, "kube-apiserver.yaml")
	run := func(argv ...string) (*engine.Result, error) { return noderun.Run(ctx, req, r, req.Cmd(argv...)) }

	// 1. Verify before anything stops: the manifest (which etcd, which
	// data dir), the snapshot's checksum and status, the fresh directory.
	res, err := run("cat", etcdManifest)
	if err != nil {
		return cty.NilVal, err
	}
	manifest := res.Stdout
	old := CurrentDataDir(manifest)
	if old == "" {
		return cty.NilVal, fmt.Errorf("%s names no --data-dir", etcdManifest)
	}
	tool := toolFor(req, manifest)
	if _, err := noderun.Run(ctx, req, r, checksumCmd(req, snap)); err != nil {
		return cty.NilVal, fmt.Errorf("refusing to restore: %w", err)
	}
	st, err := snapshotStatus(ctx, req, r, tool, snap)
	if err != nil {
		return cty.NilVal, fmt.Errorf("refusing to restore: %w", err)
	}
	if res, err := noderun.RunResult(ctx, req, r, req.Cmd("test", "!", "-e", dd)); err != nil {
		return cty.NilVal, err
	} else if res.ExitCode != 0 {
		return cty.NilVal, fmt.Errorf("refusing to restore: %s exists on %s; restore into a new directory", dd, req.NodeName())
	}
	res, err = run("stat", "-c", "%Y", snap)
	if err != nil {
		return cty.NilVal, err
	}
	taken, err := strconv.ParseInt(strings.TrimSpace(res.Stdout), 10, 64)
	if err != nil {
		return cty.NilVal, fmt.Errorf("reading the snapshot's time: %q: %w", res.Stdout, err)
	}
	snapTime := time.Unix(taken, 0).UTC()
	res, err = run("stat", "-c", "%u:%g", old)
	if err != nil {
		return cty.NilVal, err
	}
	owner := strings.TrimSpace(res.Stdout)
	req.Emit("restore_plan", fmt.Sprintf("snapshot revision %d, %d keys; current data dir %s (owner %s, kept); new %s", st.Revision, st.TotalKey, old, owner, dd), nil)

	// 2. Restore into the fresh directory, owned like the old one, while
	// etcd still runs on the old: the restore reads only the file, and it
	// checks the hash etcd appends to every snapshot, which status does
	// not. A snapshot that does not restore is refused before anything
	// stops; the directory it half wrote is this step's own (it did not
	// exist), so it goes.
	if _, err := run(tool, "snapshot", "restore", snap, "--data-dir="+dd); err != nil {
		return cty.NilVal, fmt.Errorf("refusing to restore, nothing was stopped: %w%s", err, removeFresh(ctx, req, r, dd))
	}
	if _, err := run("sh", "-c", `chown -R "$1" "$2" && chmod 700 "$2"`, "sh", owner, dd); err != nil {
		return cty.NilVal, fmt.Errorf("refusing to restore, nothing was stopped: %w%s", err, removeFresh(ctx, req, r, dd))
	}

	// 3. Stop the apiserver, then etcd (the kubelet stops static pods whose
	// manifests leave the directory).
	if _, err := run("mkdir", "-p", stash); err != nil {
		return cty.NilVal, err
	}
	stashedAPI, stashedEtcd := path.Join(stash, "kube-apiserver.yaml"), path.Join(stash, "etcd.yaml")
	if _, err := run("mv", apiManifest, stashedAPI); err != nil {
		return cty.NilVal, err
	}
	rollback := func(cause error) error {
		bg := context.WithoutCancel(ctx)
		var errs []error
		for _, mv := range [][2]string{{stashedEtcd, etcdManifest}, {stashedAPI, apiManifest}} {
			if res, err := r.Run(bg, req.Cmd("sh", "-c", `[ ! -e "$1" ] || mv "$1" "$2"`, "sh", mv[0], mv[1])); err != nil || res.ExitCode != 0 {
				errs = append(errs, fmt.Errorf("putting %s back: %v %v", mv[1], err, res))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w; and the rollback failed, the control plane may be down: %v", cause, errors.Join(errs...))
		}
		// Return with the control plane back, or say it is not.
		if kc != nil {
			if err := waitAPI(bg, kc, true); err != nil {
				return fmt.Errorf("%w; the original manifests were put back (etcd on its old data in %s), but %v", cause, old, err)
			}
		}
		return fmt.Errorf("%w; the original manifests were put back: etcd runs on its old data in %s and the apiserver is ready", cause, old)
	}
	if kc != nil {
		if err := waitAPI(ctx, kc, false); err != nil {
			return cty.NilVal, rollback(fmt.Errorf("waiting for the apiserver to stop: %w", err))
		}
	}
	if _, err := run("mv", etcdManifest, stashedEtcd); err != nil {
		return cty.NilVal, rollback(err)
	}
	if err := waitEtcd(ctx, req, r, false); err != nil {
		return cty.NilVal, rollback(fmt.Errorf("waiting for etcd to stop: %w", err))
	}

	// 4. Point etcd at the restored data and start it.
	edited := SwitchDataDir(manifest, old, dd)
	write := req.Cmd("sh", "-c", `cat > "$1.new" && mv "$1.new" "$1"`, "sh", stashedEtcd)
	write.Stdin = []byte(edited)
	if _, err := noderun.Run(ctx, req, r, write); err != nil {
		return cty.NilVal, rollback(err)
	}
	if _, err := run("mv", stashedEtcd, etcdManifest); err != nil {
		return cty.NilVal, rollback(err)
	}
	if err := waitEtcd(ctx, req, r, true); err != nil {
		return cty.NilVal, fmt.Errorf("etcd did not come up on %s: %w (the old data is untouched in %s; its manifest is in %s)", dd, err, old, stash)
	}
	// 5. Verify before the apiserver comes back.
	rev, err := etcdRevision(ctx, req, r)
	if err != nil {
		return cty.NilVal, err
	}
	if rev < st.Revision {
		return cty.NilVal, fmt.Errorf("etcd on %s reports revision %d, older than the snapshot's %d", dd, rev, st.Revision)
	}
	if k := req.Args.String("canary_key"); k != "" {
		res, err := run(append([]string{"etcdctl", "get", k, "--print-value-only"}, tls(req)...)...)
		if err != nil || strings.TrimSpace(res.Stdout) == "" {
			return cty.NilVal, fmt.Errorf("canary key %s is missing after the restore: %v", k, err)
		}
	}
	if _, err := run("mv", stashedAPI, apiManifest); err != nil {
		return cty.NilVal, err
	}
	if kc != nil {
		if err := waitAPI(ctx, kc, true); err != nil {
			return cty.NilVal, fmt.Errorf("the apiserver did not come back after the restore: %w", err)
		}
	}
	req.Emit("restored", fmt.Sprintf("etcd runs on %s (revision %d); the previous data stays in %s", dd, rev, old), nil)
	return cty.ObjectVal(map[string]cty.Value{"old_data_dir": cty.StringVal(old), "revision": cty.NumberIntVal(rev),
		"snapshot_time": cty.StringVal(snapTime.Format(time.RFC3339)), "snapshot_age_seconds": cty.NumberIntVal(int64(time.Since(snapTime).Seconds()))}), nil
}

// removeFresh deletes the data dir a failed restore half wrote (it did not
// exist before the step) and says so, or why not.
func removeFresh(ctx context.Context, req *engine.Request, r engine.Runner, dd string) string {
	res, err := r.Run(context.WithoutCancel(ctx), req.Cmd("rm", "-rf", "--", dd))
	if err != nil || res.ExitCode != 0 {
		return fmt.Sprintf("; removing the partial %s failed (%v): remove it before retrying", dd, err)
	}
	return "; the partial " + dd + " was removed"
}

// CurrentDataDir reads --data-dir from an etcd static pod manifest.
func CurrentDataDir(manifest string) string {
	for _, line := range strings.Split(manifest, "\n") {
		if i := strings.Index(line, "--data-dir="); i >= 0 {
			return strings.Trim(strings.TrimSpace(line[i+len("--data-dir="):]), `"'`)
		}
	}
	return ""
}

// SwitchDataDir replaces the data dir path wherever it stands as a whole
// path (the --data-dir flag, the volume's hostPath, the mount), never as a
// prefix of a longer path.
func SwitchDataDir(manifest, old, new string) string {
	var b strings.Builder
	for {
		i := strings.Index(manifest, old)
		if i < 0 {
			b.WriteString(manifest)
			return b.String()
		}
		end := i + len(old)
		whole := end == len(manifest) || strings.ContainsRune(" \t\n\r\"',", rune(manifest[end]))
		b.WriteString(manifest[:i])
		if whole {
			b.WriteString(new)
		} else {
			b.WriteString(old)
		}
		manifest = manifest[end:]
	}
}

func waitEtcd(ctx context.Context, req *engine.Request, r engine.Runner, up bool) error {
	deadline := time.Now().Add(WaitBound)
	for {
		res, err := r.Run(ctx, req.Cmd(append([]string{"etcdctl", "endpoint", "health", "--command-timeout=2s"}, tls(req)...)...))
		if err != nil {
			return err
		}
		if (res.ExitCode == 0) == up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd still %s after %s", map[bool]string{true: "down", false: "up"}[up], WaitBound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func etcdRevision(ctx context.Context, req *engine.Request, r engine.Runner) (int64, error) {
	res, err := noderun.Run(ctx, req, r, req.Cmd(append([]string{"etcdctl", "endpoint", "status", "--write-out=json"}, tls(req)...)...))
	if err != nil {
		return 0, err
	}
	var out []struct {
		Status struct {
			Header struct {
				Revision int64 `json:"revision"`
			} `json:"header"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &out); err != nil || len(out) == 0 {
		return 0, fmt.Errorf("reading etcd's revision: %q: %v", noderun.LastLine(res.Stdout), err)
	}
	return out[0].Status.Header.Revision, nil
}

func waitAPI(ctx context.Context, kc kubernetes.Interface, up bool) error {
	deadline := time.Now().Add(WaitBound)
	for {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		body, err := kc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(c)
		cancel()
		ok := err == nil && strings.TrimSpace(string(body)) == "ok"
		if ok == up {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the apiserver is still %s after %s", map[bool]string{true: "not ready", false: "answering"}[up], WaitBound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
