package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/internal/journal"
	"github.com/runbookhq/runbook/internal/journal/clusterstore"
	"k8s.io/client-go/kubernetes"
)

// clusterJournal is the cluster backend of one apply: the local journal
// is also kept in a ConfigMap, and the newest journal of the runbook,
// wherever it was written, is the one resumed.
type clusterJournal struct {
	kc      kubernetes.Interface
	ns      string
	runbook string
	log     io.Writer   // the one-line notes on where the journal came from
	env     *engine.Env // its Emit, once set, carries the warnings
	runID   string
	started bool // the first record reached the cluster: warnings from here on
}

// pull makes dir hold the newest journal of the runbook: local, the latest
// journal in dir ("" when none), unless the cluster's latest was saved later
// or is the same run further on (another machine ran it). It returns the
// journal to resume from, and says in one line where it came from.
func (c *clusterJournal) pull(ctx context.Context, dir, local string) (string, error) {
	remote, err := clusterstore.Latest(ctx, c.kc, c.ns, c.runbook)
	if err != nil {
		return "", fmt.Errorf("journal { backend = \"cluster\" }: %w", err)
	}
	if remote.ID == "" {
		if local != "" {
			fmt.Fprintf(c.log, "Journal: %s (the cluster has no journal of runbook %q in %s).\n", local, c.runbook, c.ns)
		}
		return local, nil
	}
	if local != "" && filepath.Base(local) != remote.ID+".jsonl" {
		if st, err := os.Stat(local); err == nil && !remote.Updated.After(st.ModTime()) {
			fmt.Fprintf(c.log, "Journal: %s (newer than the cluster's latest, run %s).\n", local, remote.ID)
			return local, nil
		}
	}
	path := journal.Path(dir, remote.ID)
	note, err := reconcile(path, remote)
	if err != nil {
		return "", fmt.Errorf("journal of run %s from the cluster: %w", remote.ID, err)
	}
	fmt.Fprintln(c.log, note)
	return path, nil
}

// reconcile brings the cluster's copy of a run to its local file, unless
// the local file already has all of it, and describes what it did. A local
// copy that differs otherwise is kept aside, never overwritten.
func reconcile(path string, remote clusterstore.Run) (string, error) {
	where := fmt.Sprintf("ConfigMap %s/%s, saved %s", remote.Namespace, remote.Name, remote.Updated.Format(time.RFC3339))
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("Journal of run %s: taken from the cluster (%s), there was none here; now %s.", remote.ID, where, path), writeAtomic(path, remote.Text)
	}
	if err != nil {
		return "", err
	}
	whole := old[:bytes.LastIndexByte(old, '\n')+1] // a torn last line is not a difference
	switch {
	case bytes.Equal(whole, remote.Text):
		return fmt.Sprintf("Journal: %s (the same as the cluster's, %s).", path, where), nil
	case bytes.HasPrefix(whole, remote.Text):
		return fmt.Sprintf("Journal: %s (ahead of the cluster's copy, %s, which catches up with the next record).", path, where), nil
	case bytes.HasPrefix(remote.Text, whole):
		return fmt.Sprintf("Journal of run %s: taken from the cluster (%s), which is ahead of %s.", remote.ID, where, path), writeAtomic(path, remote.Text)
	}
	aside := fmt.Sprintf("%s.diverged-%d", path, time.Now().Unix())
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	return fmt.Sprintf("Journal of run %s: taken from the cluster (%s); the local copy had other records and is kept as %s.", remote.ID, where, aside), writeAtomic(path, remote.Text)
}

// writeAtomic replaces path with b, fsync'd, so that a crash leaves the
// old journal or the new one.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("journal directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".pull-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return os.Rename(f.Name(), path)
}

// attach mirrors j into the run's ConfigMap. A journal already too large
// for one is refused here, before anything changes.
func (c *clusterJournal) attach(j *journal.Journal, env *engine.Env, runID, planHash string) error {
	if c == nil {
		return nil
	}
	c.env, c.runID = env, runID
	save := func(ctx context.Context, text []byte) error {
		return clusterstore.Save(ctx, c.kc, c.ns, runID, c.runbook, planHash, text)
	}
	if err := j.Mirror(save, clusterstore.Timeout, c.warn); err != nil {
		return err
	}
	if n := len(j.Text()); n > clusterstore.MaxBytes {
		return fmt.Errorf("journal { backend = \"cluster\" }: the journal of run %s is %d KiB, over the %d KiB runbook keeps in a ConfigMap (limit 1 MiB); nothing was changed", runID, n>>10, clusterstore.MaxBytes>>10)
	}
	return nil
}

// start checks that the run's first record reached the cluster: a
// journal the plan wants there that cannot be written is found before
// anything changes.
func (c *clusterJournal) start(j *journal.Journal) error {
	if c == nil {
		return nil
	}
	if err := j.FlushMirror(); err != nil {
		return fmt.Errorf("journal { backend = \"cluster\" }: the run's first record could not be kept in the cluster, so nothing was changed: %w", err)
	}
	c.started = true
	fmt.Fprintf(c.log, "Journal: %s, copied to ConfigMap %s/%s.\n", j.Path(), c.ns, clusterstore.Name(c.runID))
	return nil
}

// warn reports the copy falling behind or catching up: an event once the
// run's events flow, a line on stderr before.
func (c *clusterJournal) warn(msg string) {
	switch {
	case !c.started:
		// The first record's failure is start's error.
	case c.env.Emit == nil:
		fmt.Fprintf(c.log, "warning: %s\n", msg)
	default:
		c.env.Emit(engine.Event{Time: time.Now(), Type: "journal_warning", RunID: c.runID, Message: msg})
	}
}

// finish says whether the cluster's copy is complete at the end of a run.
func (c *clusterJournal) finish(j *journal.Journal) {
	if c == nil {
		return
	}
	if err := j.FlushMirror(); err != nil {
		fmt.Fprintf(c.log, "warning: the journal's copy in the cluster is behind %s, which has every record: %v\n", j.Path(), err)
	}
}
