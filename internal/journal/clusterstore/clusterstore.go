// Package clusterstore keeps a copy of a run's journal in the cluster, so
// that another machine can resume the run or report on it: one ConfigMap per
// run, runbook-journal-<run id>, whose data key journal.jsonl holds the
// whole journal text.
//
// It is not the journal. The local file, fsync'd record by record, is
// written first and is what makes a crash safe; this copy is written after
// it and may lag behind by the records whose cluster write failed, catching
// up on the next Save that succeeds (each Save writes the whole text). Saves
// only ever extend the copy: a copy that is not a prefix of the text being
// saved (another machine appended to it) is never overwritten.
//
// A ConfigMap rather than a Secret, because journal records hold no secret:
// step summaries, errors and outputs are masked before they are recorded
// (journal.Recorder), node states are schedulability and versions, and the
// variables appear only as a hash, the one plan output shows.
package clusterstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Where and how journals are kept.
const (
	DefaultNamespace = "kube-system"
	Key              = "journal.jsonl"
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "runbook"
	LabelRunbook     = "runbook.dev/runbook"
	AnnRunID         = "runbook.dev/run-id"
	AnnRunbook       = "runbook.dev/runbook"
	AnnPlanHash      = "runbook.dev/plan-hash"
	AnnUpdated       = "runbook.dev/updated-at"
)

// MaxBytes is the largest journal kept: a ConfigMap holds at most 1 MiB,
// and the rest is left for its metadata.
const MaxBytes = 900 << 10

// Timeout bounds each Save, List and Get (all of its requests together).
var Timeout = 10 * time.Second

// maxConflicts is how many times a Save re-reads after losing a race.
const maxConflicts = 5

// Errors a caller may tell apart.
var (
	ErrTooLarge = errors.New("journal too large for a ConfigMap")
	ErrDiverged = errors.New("the copy in the cluster has records this journal does not")
)

// Run is one run's journal as the cluster has it.
type Run struct {
	ID, Runbook, PlanHash string
	Text                  []byte
	Updated               time.Time
	Name, Namespace       string // the ConfigMap
}

// Name is the ConfigMap of a run: runbook-journal-<run id> as a DNS-1123
// name.
func Name(runID string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(runID) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	n := "runbook-journal-" + b.String()
	if len(n) > 253 {
		n = n[:253]
	}
	return strings.TrimRight(n, "-.")
}

// LabelValue is s as a label value: at most 63 characters of [A-Za-z0-9_.-],
// beginning and ending with a letter or digit. Different names may share
// one; the full name is in an annotation.
func LabelValue(s string) string {
	v := []byte(s)
	for i, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			v[i] = '-'
		}
	}
	if len(v) > 63 {
		v = v[:63]
	}
	out := strings.Trim(string(v), "-_.")
	if out == "" {
		return "runbook"
	}
	return out
}

// Save writes a run's whole journal text to its ConfigMap, creating it, or
// updating it conditionally on the resourceVersion read (re-reading after
// a conflict). It refuses a text over MaxBytes and one that does not extend
// the copy already there.
func Save(ctx context.Context, kc kubernetes.Interface, ns, runID, runbook, planHash string, text []byte) error {
	name := Name(runID)
	if len(text) > MaxBytes {
		return fmt.Errorf("journal of run %s is %d KiB, over the %d KiB runbook keeps in a ConfigMap (whose limit is 1 MiB): %w", runID, len(text)>>10, MaxBytes>>10, ErrTooLarge)
	}
	ctx, cancel := bounded(ctx)
	defer cancel()
	cms := kc.CoreV1().ConfigMaps(ns)
	for attempt := 1; ; attempt++ {
		cur, err := cms.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, configMap(ns, runID, runbook, planHash, text), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < maxConflicts {
				continue
			}
		case err != nil:
			return fmt.Errorf("reading ConfigMap %s/%s: %w", ns, name, err)
		default:
			next, done, cerr := extend(cur, runID, runbook, planHash, text)
			if cerr != nil || done {
				return cerr
			}
			_, err = cms.Update(ctx, next, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) && attempt < maxConflicts {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("writing ConfigMap %s/%s: %w", ns, name, err)
		}
		return nil
	}
}

// extend is cur carrying text, or done when it already does.
func extend(cur *corev1.ConfigMap, runID, runbook, planHash string, text []byte) (next *corev1.ConfigMap, done bool, err error) {
	where := cur.Namespace + "/" + cur.Name
	if got := cur.Annotations[AnnRunID]; got != runID {
		return nil, false, fmt.Errorf("ConfigMap %s belongs to run %q, not %s", where, got, runID)
	}
	old := cur.Data[Key]
	if old == string(text) {
		return nil, true, nil
	}
	if !strings.HasPrefix(string(text), old) {
		return nil, false, fmt.Errorf("ConfigMap %s not overwritten: %w (another machine wrote to run %s)", where, ErrDiverged, runID)
	}
	next = cur.DeepCopy() // keeps the resourceVersion read: the update is conditional on it
	want := configMap(cur.Namespace, runID, runbook, planHash, text)
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	for k, v := range want.Labels {
		next.Labels[k] = v
	}
	for k, v := range want.Annotations {
		next.Annotations[k] = v
	}
	next.Data = want.Data
	return next, false, nil
}

func configMap(ns, runID, runbook, planHash string, text []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(runID),
			Namespace: ns,
			Labels:    map[string]string{LabelManagedBy: ManagedBy, LabelRunbook: LabelValue(runbook)},
			Annotations: map[string]string{AnnRunID: runID, AnnRunbook: runbook, AnnPlanHash: planHash,
				AnnUpdated: time.Now().UTC().Format(time.RFC3339Nano)},
		},
		Data: map[string]string{Key: string(text)},
	}
}

// Latest is the run of runbook whose journal was saved last, or a zero Run
// when the cluster has none.
func Latest(ctx context.Context, kc kubernetes.Interface, ns, runbook string) (Run, error) {
	runs, err := List(ctx, kc, ns, runbook)
	if err != nil || len(runs) == 0 {
		return Run{}, err
	}
	return runs[len(runs)-1], nil
}

// List is every run of runbook kept in ns, oldest save first (ties by run
// id).
func List(ctx context.Context, kc kubernetes.Interface, ns, runbook string) ([]Run, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	sel := labels.Set{LabelManagedBy: ManagedBy, LabelRunbook: LabelValue(runbook)}.String()
	l, err := kc.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing the journals in %s (ConfigMaps %s): %w", ns, sel, err)
	}
	var runs []Run
	for i := range l.Items {
		if r := runOf(&l.Items[i]); r.ID != "" && r.Runbook == runbook {
			runs = append(runs, r)
		}
	}
	sort.Slice(runs, func(i, j int) bool {
		if !runs[i].Updated.Equal(runs[j].Updated) {
			return runs[i].Updated.Before(runs[j].Updated)
		}
		return runs[i].ID < runs[j].ID
	})
	return runs, nil
}

// Get is one run's journal, found by its run id in any runbook.
func Get(ctx context.Context, kc kubernetes.Interface, ns, runID string) (Run, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, Name(runID), metav1.GetOptions{})
	if err != nil {
		return Run{}, fmt.Errorf("reading the journal of run %s (ConfigMap %s/%s): %w", runID, ns, Name(runID), err)
	}
	r := runOf(cm)
	if r.ID != runID {
		return Run{}, fmt.Errorf("ConfigMap %s/%s belongs to run %q, not %s", ns, cm.Name, r.ID, runID)
	}
	return r, nil
}

func runOf(cm *corev1.ConfigMap) Run {
	r := Run{ID: cm.Annotations[AnnRunID], Runbook: cm.Annotations[AnnRunbook], PlanHash: cm.Annotations[AnnPlanHash],
		Text: []byte(cm.Data[Key]), Name: cm.Name, Namespace: cm.Namespace, Updated: cm.CreationTimestamp.Time}
	if t, err := time.Parse(time.RFC3339Nano, cm.Annotations[AnnUpdated]); err == nil {
		r.Updated = t
	}
	return r
}

// bounded gives ctx the package's Timeout (or its own earlier deadline).
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, Timeout)
}
