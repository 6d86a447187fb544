package clusterstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var cmGVR = corev1.SchemeGroupVersion.WithResource("configmaps")

// rvClient is a fake clientset that, like the API server, gives every write
// a new resourceVersion and refuses an update from a stale one. beforeUpdate,
// when set, runs before each update is checked: another writer.
type rvClient struct {
	*fake.Clientset
	mu           sync.Mutex
	rv           int
	updates      int
	beforeUpdate func(n int)
}

func newRVClient(objs ...runtime.Object) *rvClient {
	c := &rvClient{Clientset: fake.NewClientset(objs...)}
	c.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*corev1.ConfigMap).ResourceVersion = c.next()
		return false, nil, nil
	})
	c.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.mu.Lock()
		c.updates++
		n, hook := c.updates, c.beforeUpdate
		c.mu.Unlock()
		if hook != nil {
			hook(n)
		}
		cm := a.(k8stesting.UpdateAction).GetObject().(*corev1.ConfigMap)
		cur, err := c.Tracker().Get(cmGVR, cm.Namespace, cm.Name)
		if err == nil && cur.(*corev1.ConfigMap).ResourceVersion != cm.ResourceVersion {
			return true, nil, apierrors.NewConflict(cmGVR.GroupResource(), cm.Name, errors.New("the object has been modified"))
		}
		cm.ResourceVersion = c.next()
		return false, nil, nil
	})
	return c
}

func (c *rvClient) next() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rv++
	return strconv.Itoa(c.rv)
}

// rewrite changes a stored journal as another writer would, through the
// tracker: reactors run with the clientset's lock held.
func (c *rvClient) rewrite(t *testing.T, runID, text string) {
	t.Helper()
	o, err := c.Tracker().Get(cmGVR, "kube-system", Name(runID))
	if err != nil {
		t.Fatal(err)
	}
	cm := o.(*corev1.ConfigMap).DeepCopy()
	cm.Data[Key] = text
	cm.ResourceVersion = c.next()
	if err := c.Tracker().Update(cmGVR, cm, cm.Namespace); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *rvClient, runID string) *corev1.ConfigMap {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps("kube-system").Get(context.Background(), Name(runID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

const (
	line1 = `{"type":"run_started","run_id":"20240101-000000-aa"}` + "\n"
	line2 = `{"type":"step_started","address":"step.a"}` + "\n"
	line3 = `{"type":"step_finished","address":"step.a"}` + "\n"
)

func TestSaveCreatesThenExtends(t *testing.T) {
	ctx := context.Background()
	c := newRVClient()
	id := "20240101-000000-aa"
	if err := Save(ctx, c, "kube-system", id, "Node maintenance", "p1", []byte(line1)); err != nil {
		t.Fatal(err)
	}
	cm := get(t, c, id)
	if cm.Name != "runbook-journal-20240101-000000-aa" || cm.Data[Key] != line1 {
		t.Fatalf("created %s with %q", cm.Name, cm.Data[Key])
	}
	if cm.Labels[LabelManagedBy] != "runbook" || cm.Labels[LabelRunbook] != "Node-maintenance" ||
		cm.Annotations[AnnRunbook] != "Node maintenance" || cm.Annotations[AnnPlanHash] != "p1" || cm.Annotations[AnnRunID] != id {
		t.Fatalf("labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	if err := Save(ctx, c, "kube-system", id, "Node maintenance", "p2", []byte(line1+line2)); err != nil {
		t.Fatal(err)
	}
	if cm := get(t, c, id); cm.Data[Key] != line1+line2 || cm.Annotations[AnnPlanHash] != "p2" {
		t.Fatalf("after the update: %q, plan hash %s", cm.Data[Key], cm.Annotations[AnnPlanHash])
	}
	// The same text again writes nothing.
	before := c.updates
	if err := Save(ctx, c, "kube-system", id, "Node maintenance", "p2", []byte(line1+line2)); err != nil || c.updates != before {
		t.Fatalf("saving the same text: %v, %d updates", err, c.updates-before)
	}
	// A text that does not extend the copy (another machine's records)
	// is refused, and the copy stays.
	err := Save(ctx, c, "kube-system", id, "Node maintenance", "p2", []byte(line1+line3))
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("diverged save: %v", err)
	}
	if cm := get(t, c, id); cm.Data[Key] != line1+line2 {
		t.Fatalf("overwritten: %q", cm.Data[Key])
	}
}

func TestSaveRetriesAfterConflict(t *testing.T) {
	ctx := context.Background()
	id := "20240101-000000-aa"
	c := newRVClient()
	if err := Save(ctx, c, "kube-system", id, "rb", "p", []byte(line1)); err != nil {
		t.Fatal(err)
	}
	// Between this save's read and its update, another writer (a re-run
	// of the same save, say) brings the copy to line1+line2.
	c.beforeUpdate = func(n int) {
		if n == 1 {
			c.rewrite(t, id, line1+line2)
		}
	}
	c.updates = 0
	if err := Save(ctx, c, "kube-system", id, "rb", "p", []byte(line1+line2+line3)); err != nil {
		t.Fatal(err)
	}
	if c.updates != 2 {
		t.Fatalf("%d updates, want a conflict then a success", c.updates)
	}
	if got := get(t, c, id).Data[Key]; got != line1+line2+line3 {
		t.Fatalf("after the retry: %q", got)
	}

	// When the other writer's text is not a prefix of ours, the re-read
	// finds it and nothing is overwritten.
	c.beforeUpdate = func(n int) {
		if n == 1 {
			c.rewrite(t, id, line1+line2+line2)
		}
	}
	c.updates = 0
	err := Save(ctx, c, "kube-system", id, "rb", "p", []byte(line1+line2+line3+line3))
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("after a diverging writer: %v", err)
	}
	if got := get(t, c, id).Data[Key]; got != line1+line2+line2 {
		t.Fatalf("overwritten: %q", got)
	}
}

func TestSaveGivesUpAfterRepeatedConflicts(t *testing.T) {
	id := "20240101-000000-aa"
	c := newRVClient()
	if err := Save(context.Background(), c, "kube-system", id, "rb", "p", []byte(line1)); err != nil {
		t.Fatal(err)
	}
	c.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(cmGVR.GroupResource(), Name(id), errors.New("modified"))
	})
	err := Save(context.Background(), c, "kube-system", id, "rb", "p", []byte(line1+line2))
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "kube-system/"+Name(id)) {
		t.Fatalf("after %d conflicts: %v", maxConflicts, err)
	}
}

func TestSaveRefusesTooLarge(t *testing.T) {
	c := newRVClient()
	big := []byte(strings.Repeat(line1, MaxBytes/len(line1)+1))
	err := Save(context.Background(), c, "kube-system", "r1", "rb", "p", big)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1 MiB") || !strings.Contains(err.Error(), "900 KiB") {
		t.Fatalf("too large: %v", err)
	}
	if n := len(c.Actions()); n != 0 {
		t.Fatalf("%d API calls for a journal that cannot be kept", n)
	}
}

func TestSaveRefusesAnotherRunsConfigMap(t *testing.T) {
	// Two run ids that sanitise to one name: the second does not take over
	// the first's ConfigMap.
	c := newRVClient()
	if err := Save(context.Background(), c, "kube-system", "run_1", "rb", "p", []byte(line1)); err != nil {
		t.Fatal(err)
	}
	err := Save(context.Background(), c, "kube-system", "Run-1", "rb", "p", []byte(line1))
	if Name("run_1") != Name("Run-1") || err == nil || !strings.Contains(err.Error(), `belongs to run "run_1"`) {
		t.Fatalf("names %s %s, err %v", Name("run_1"), Name("Run-1"), err)
	}
}

func stored(ns, runID, runbook string, updated time.Time, text string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: Name(runID), Namespace: ns,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelRunbook: LabelValue(runbook)},
			Annotations: map[string]string{AnnRunID: runID, AnnRunbook: runbook, AnnPlanHash: "p",
				AnnUpdated: updated.UTC().Format(time.RFC3339Nano)}},
		Data: map[string]string{Key: text},
	}
}

func TestLatestSelectsLastSavedRunOfTheRunbook(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 70)
	c := newRVClient(
		stored("kube-system", "r-old", "rb", t0, "old\n"),
		stored("kube-system", "r-new", "rb", t0.Add(2*time.Hour), "new\n"),
		stored("kube-system", "r-mid", "rb", t0.Add(time.Hour), "mid\n"),
		stored("kube-system", "r-other", "other", t0.Add(3*time.Hour), "other\n"),
		stored("default", "r-elsewhere", "rb", t0.Add(4*time.Hour), "elsewhere\n"),
		// Same label value as long+"y" (both cut to 63 characters):
		// told apart by the annotation.
		stored("kube-system", "r-long", long, t0.Add(5*time.Hour), "long\n"),
		stored("kube-system", "r-longy", long+"y", t0.Add(6*time.Hour), "longy\n"),
		// A tie in time is broken by run id.
		stored("kube-system", "r-tie-b", "tie", t0, "b\n"),
		stored("kube-system", "r-tie-a", "tie", t0, "a\n"),
	)
	ctx := context.Background()
	for _, tc := range []struct{ ns, runbook, id, text string }{
		{"kube-system", "rb", "r-new", "new\n"},
		{"kube-system", "other", "r-other", "other\n"},
		{"default", "rb", "r-elsewhere", "elsewhere\n"},
		{"kube-system", long, "r-long", "long\n"},
		{"kube-system", long + "y", "r-longy", "longy\n"},
		{"kube-system", "tie", "r-tie-b", "b\n"},
		{"kube-system", "none", "", ""},
	} {
		r, err := Latest(ctx, c, tc.ns, tc.runbook)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != tc.id || string(r.Text) != tc.text {
			t.Errorf("Latest(%s, %.10s): run %q %q, want %q %q", tc.ns, tc.runbook, r.ID, r.Text, tc.id, tc.text)
		}
	}
	runs, err := List(ctx, c, "kube-system", "rb")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "r-old r-mid r-new" {
		t.Fatalf("List: %v", ids)
	}
}

func TestLatestAfterSaves(t *testing.T) {
	ctx := context.Background()
	c := newRVClient()
	for _, id := range []string{"r2", "r1", "r3"} {
		if err := Save(ctx, c, "kube-system", id, "rb", "p", []byte(id+"\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct save times
	}
	// r2 is saved again last: it is the latest, whatever its id.
	if err := Save(ctx, c, "kube-system", "r2", "rb", "p", []byte("r2\nmore\n")); err != nil {
		t.Fatal(err)
	}
	r, err := Latest(ctx, c, "kube-system", "rb")
	if err != nil || r.ID != "r2" || string(r.Text) != "r2\nmore\n" || r.Name != Name("r2") || r.Namespace != "kube-system" {
		t.Fatalf("Latest: %+v %v", r, err)
	}
	g, err := Get(ctx, c, "kube-system", "r3")
	if err != nil || string(g.Text) != "r3\n" {
		t.Fatalf("Get: %+v %v", g, err)
	}
	if _, err := Get(ctx, c, "kube-system", "r9"); !apierrors.IsNotFound(err) {
		t.Fatalf("Get of a missing run: %v", err)
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"20240101-000000-ab12": "runbook-journal-20240101-000000-ab12",
		"Run_1/x":              "runbook-journal-run-1-x",
		"a-":                   "runbook-journal-a",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
	if n := Name(strings.Repeat("a", 300)); len(n) != 253 {
		t.Errorf("long name: %d characters", len(n))
	}
	for in, want := range map[string]string{
		"upgrade-1.28":          "upgrade-1.28",
		"Node maintenance!":     "Node-maintenance",
		"--":                    "runbook",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}
