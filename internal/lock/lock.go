// Package lock keeps two runs from acting on one cluster at once: a
// coordination.k8s.io Lease that names the holder, its run id and plan
// hash, renewed while the run lives and expiring about 30 s after its holder
// dies. Creating the Lease is the atomic step: the API server lets exactly
// one create succeed.
//
// It does not queue or wait for the lock: a second run fails at once,
// naming the holder.
package lock

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Where the lock lives.
const (
	Namespace = "kube-system"
	Name      = "runbook-lock"
)

// Annotations on the Lease.
const (
	AnnRunID    = "runbook.dev/run-id"
	AnnPlanHash = "runbook.dev/plan-hash"
	AnnRunbook  = "runbook.dev/runbook"
)

// Duration is how long a Lease lives without renewal; Renew is how often a
// live run renews it.
var (
	Duration = 30 * time.Second
	Renew    = 10 * time.Second
)

// HeldError says who holds the lock.
type HeldError struct {
	Holder, RunID, PlanHash, Runbook string
	Since, Renewed                   time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("another run holds the cluster lock: %s (run %s of %q, plan %s) since %s, last renewed %s ago; if that run is dead the lock expires %s after its last renewal, or break it with `runbook unlock %s`",
		e.Holder, e.RunID, e.Runbook, e.PlanHash, e.Since.Format(time.RFC3339), time.Since(e.Renewed).Round(time.Second), Duration, e.RunID)
}

// Lock is a held lock.
type Lock struct {
	kc     kubernetes.Interface
	runID  string
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lost   error
}

// Holder names this process: user@host/pid.
func Holder() string {
	u := "unknown"
	if cu, err := user.Current(); err == nil {
		u = cu.Username
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%d", u, h, os.Getpid())
}

// Acquire takes the lock or fails at once with *HeldError. An expired Lease
// (its holder died) is taken over.
func Acquire(ctx context.Context, kc kubernetes.Interface, runID, runbook, planHash string) (*Lock, error) {
	leases := kc.CoordinationV1().Leases(Namespace)
	now := metav1.NewMicroTime(time.Now())
	want := &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace,
			Annotations: map[string]string{AnnRunID: runID, AnnPlanHash: planHash, AnnRunbook: runbook}},
		Spec: coordv1.LeaseSpec{HolderIdentity: ptr.To(Holder()), LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)),
			AcquireTime: &now, RenewTime: &now},
	}
	_, err := leases.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, gerr := leases.Get(ctx, Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, fmt.Errorf("reading the cluster lock: %w", gerr)
		}
		if !expired(cur, time.Now()) && !deadHere(cur, runID) {
			return nil, held(cur)
		}
		// Its holder stopped renewing: take it over, conditionally on the
		// version we read so that two runs cannot both take it.
		want.ResourceVersion = cur.ResourceVersion
		if _, err = leases.Update(ctx, want, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			if cur, gerr := leases.Get(ctx, Name, metav1.GetOptions{}); gerr == nil {
				return nil, held(cur)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("taking the cluster lock (Lease %s/%s): %w", Namespace, Name, err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	l := &Lock{kc: kc, runID: runID, cancel: cancel, done: make(chan struct{})}
	go l.renew(rctx)
	return l, nil
}

// deadHere reports a lock held by this same run from a process of this
// machine that no longer exists (a resume after a crash or kill -9): there
// is nobody to wait for.
func deadHere(l *coordv1.Lease, runID string) bool {
	if l.Annotations[AnnRunID] != runID || l.Spec.HolderIdentity == nil {
		return false
	}
	userHost, pidStr, ok := strings.Cut(*l.Spec.HolderIdentity, "/")
	me, _, _ := strings.Cut(Holder(), "/")
	if !ok || userHost != me {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	// Signal 0 checks existence without touching the process.
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func expired(l *coordv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

func held(l *coordv1.Lease) *HeldError {
	e := &HeldError{RunID: l.Annotations[AnnRunID], PlanHash: l.Annotations[AnnPlanHash], Runbook: l.Annotations[AnnRunbook]}
	if l.Spec.HolderIdentity != nil {
		e.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.AcquireTime != nil {
		e.Since = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		e.Renewed = l.Spec.RenewTime.Time
	}
	return e
}

func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(Renew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, Renew)
		err := l.renewOnce(rctx)
		cancel()
		if err != nil {
			l.mu.Lock()
			l.lost = err
			l.mu.Unlock()
		}
	}
}

func (l *Lock) renewOnce(ctx context.Context) error {
	leases := l.kc.CoordinationV1().Leases(Namespace)
	cur, err := leases.Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("renewing the cluster lock: %w", err)
	}
	if cur.Annotations[AnnRunID] != l.runID {
		return fmt.Errorf("the cluster lock was taken by run %s", cur.Annotations[AnnRunID])
	}
	now := metav1.NewMicroTime(time.Now())
	cur.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renewing the cluster lock: %w", err)
	}
	return nil
}

// Lost reports a renewal failure (nil while the lock is held).
func (l *Lock) Lost() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Release stops renewing and deletes the Lease if it is still this run's.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	return Break(ctx, l.kc, l.runID)
}

// Break deletes the lock if it belongs to runID (`runbook unlock RUN_ID`).
func Break(ctx context.Context, kc kubernetes.Interface, runID string) error {
	leases := kc.CoordinationV1().Leases(Namespace)
	cur, err := leases.Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the cluster lock: %w", err)
	}
	if cur.Annotations[AnnRunID] != runID {
		return fmt.Errorf("the cluster lock belongs to run %s (%s), not %s", cur.Annotations[AnnRunID], ptr.Deref(cur.Spec.HolderIdentity, "unknown"), runID)
	}
	err = leases.Delete(ctx, Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing the cluster lock: %w", err)
	}
	return nil
}

// Current returns the holder of the lock, or nil.
func Current(ctx context.Context, kc kubernetes.Interface) (*HeldError, error) {
	cur, err := kc.CoordinationV1().Leases(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return held(cur), nil
}
