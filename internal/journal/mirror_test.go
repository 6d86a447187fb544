package journal

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// copyStore is a mirror's far end that can be made to fail.
type copyStore struct {
	mu    sync.Mutex
	text  string
	saves int
	fail  error
}

func (c *copyStore) save(_ context.Context, text []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saves++
	if c.fail != nil {
		return c.fail
	}
	if !strings.HasPrefix(string(text), c.text) {
		return errors.New("a shorter text overwrote a longer one")
	}
	c.text = string(text)
	return nil
}

func (c *copyStore) set(err error) {
	c.mu.Lock()
	c.fail = err
	c.mu.Unlock()
}

func TestMirrorCopiesEveryRecordAndCatchesUp(t *testing.T) {
	old := MirrorRetry
	MirrorRetry = 0
	defer func() { MirrorRetry = old }()
	dir := t.TempDir()
	// A journal from an earlier attempt: the copy gets it with the next record.
	j, _ := Open(dir, "r")
	j.Append(Record{Type: RunStarted, RunID: "r"})
	j.Close()

	j, err := Open(dir, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c := &copyStore{}
	var warnings []string
	if err := j.Mirror(c.save, time.Second, func(m string) { warnings = append(warnings, m) }); err != nil {
		t.Fatal(err)
	}
	file := func() string { b, _ := os.ReadFile(j.Path()); return string(b) }
	if err := j.Append(Record{Type: StepStarted, Address: "step.a"}); err != nil {
		t.Fatal(err)
	}
	if c.text != file() || strings.Count(c.text, "\n") != 2 {
		t.Fatalf("copy %q, file %q", c.text, file())
	}

	// The cluster fails: the records are in the file all the same, one
	// warning says so, and Append does not fail.
	c.set(errors.New("connection refused"))
	for _, a := range []string{"step.b", "step.c"} {
		if err := j.Append(Record{Type: StepStarted, Address: a}); err != nil {
			t.Fatalf("a failed copy failed Append: %v", err)
		}
	}
	if strings.Count(file(), "\n") != 4 || strings.Count(c.text, "\n") != 2 {
		t.Fatalf("file %d records, copy %d", strings.Count(file(), "\n"), strings.Count(c.text, "\n"))
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "connection refused") || !strings.Contains(warnings[0], j.Path()) {
		t.Fatalf("warnings %q", warnings)
	}
	if err := j.FlushMirror(); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("FlushMirror while failing: %v", err)
	}

	// Back: the next record carries the whole text, missed ones included.
	c.set(nil)
	if err := j.Append(Record{Type: StepStarted, Address: "step.d"}); err != nil {
		t.Fatal(err)
	}
	if c.text != file() || len(warnings) != 2 || !strings.Contains(warnings[1], "caught up") {
		t.Fatalf("after recovery: copy %d records of %d; warnings %q", strings.Count(c.text, "\n"), strings.Count(file(), "\n"), warnings)
	}
	if err := j.FlushMirror(); err != nil || c.saves != 5 {
		t.Fatalf("FlushMirror when up to date: %v, %d saves", err, c.saves)
	}
}

func TestMirrorBacksOffAfterAFailure(t *testing.T) {
	old := MirrorRetry
	MirrorRetry = time.Hour
	defer func() { MirrorRetry = old }()
	j, _ := Open(t.TempDir(), "r")
	defer j.Close()
	c := &copyStore{fail: errors.New("timeout")}
	j.Mirror(c.save, time.Second, nil)
	for range 5 {
		j.Append(Record{Type: Event})
	}
	if c.saves != 1 {
		t.Fatalf("%d saves while backing off, want 1", c.saves)
	}
	c.set(nil)
	// The end of a run flushes whatever the back-off held.
	if err := j.FlushMirror(); err != nil || strings.Count(c.text, "\n") != 5 {
		t.Fatalf("flush: %v, %d records", err, strings.Count(c.text, "\n"))
	}
}

func TestMirrorConcurrentAppendsNeverGoBack(t *testing.T) {
	j, _ := Open(t.TempDir(), "r")
	defer j.Close()
	c := &copyStore{}
	j.Mirror(c.save, time.Second, func(m string) { t.Errorf("warning: %s", m) })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				j.Append(Record{Type: StepStarted, Attempt: i})
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(j.Path())
	if c.text != string(b) || strings.Count(c.text, "\n") != 160 {
		t.Fatalf("copy has %d records, file %d", strings.Count(c.text, "\n"), strings.Count(string(b), "\n"))
	}
}

func TestEncodeOutputsMasksEscapedSecrets(t *testing.T) {
	// JSON escapes ", \, <, > and &: masking must not depend on them.
	secret := `p<w>&"d\x`
	v := cty.ObjectVal(map[string]cty.Value{
		"stdout": cty.StringVal("token: " + secret),
		"list":   cty.ListVal([]cty.Value{cty.StringVal(secret)}),
	})
	m := EncodeOutputs(v, []string{secret})
	if m["stdout"] != "token: (sensitive)" || m["list"].([]any)[0] != "(sensitive)" {
		t.Fatalf("outputs %v", m)
	}
}
