package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/internal/labtest"
	"github.com/runbookhq/runbook/internal/lock"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestConcurrentAcquire: two runs start at once against one real API
// server; exactly one gets the lock, 20 times out of 20, and the other is
// told who holds it.
func TestConcurrentAcquire(t *testing.T) {
	lab := labtest.Up(t, labtest.Options{Workers: 1})
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		locks := make([]*lock.Lock, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				locks[i], errs[i] = lock.Acquire(ctx, lab.Client, fmt.Sprintf("run-%d-%d", round, i), "test", "hash")
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for i := range 2 {
			if errs[i] == nil {
				won++
				continue
			}
			var held *lock.HeldError
			if !errors.As(errs[i], &held) || !strings.HasPrefix(held.RunID, fmt.Sprintf("run-%d-", round)) {
				t.Fatalf("round %d: loser's error %v", round, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d runs got the lock", round, won)
		}
		for _, l := range locks {
			if l != nil {
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestExpiredLockIsTakenOver: a holder that died (stopped renewing) loses
// the lock after its duration; unlock breaks it at once.
func TestExpiredLockIsTakenOver(t *testing.T) {
	lab := labtest.Up(t, labtest.Options{Workers: 1})
	ctx := context.Background()
	old := lock.Duration
	lock.Duration = 2 * time.Second
	defer func() { lock.Duration = old }()
	first, err := lock.Acquire(ctx, lab.Client, "dead-run", "test", "h")
	if err != nil {
		t.Fatal(err)
	}
	_ = first // never released: its holder "died"; renewal is every 10 s
	if _, err := lock.Acquire(ctx, lab.Client, "second", "test", "h"); err == nil {
		t.Fatal("a live lock was taken")
	}
	// Make the first holder's lease look dead: stop its renewal by
	// rewinding renewTime far enough.
	l, err := lab.Client.CoordinationV1().Leases(lock.Namespace).Get(ctx, lock.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	past := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	l.Spec.RenewTime = &past
	if _, err := lab.Client.CoordinationV1().Leases(lock.Namespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := lock.Acquire(ctx, lab.Client, "second", "test", "h")
	if err != nil {
		t.Fatalf("an expired lock was not taken over: %v", err)
	}
	if err := lock.Break(ctx, lab.Client, "wrong-run"); err == nil {
		t.Fatal("unlock with the wrong run id broke the lock")
	}
	if err := lock.Break(ctx, lab.Client, "second"); err != nil {
		t.Fatal(err)
	}
	if cur, _ := lock.Current(ctx, lab.Client); cur != nil {
		t.Fatalf("lock still held by %s", cur.RunID)
	}
	_ = second
}
