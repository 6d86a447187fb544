package journal

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// MirrorRetry is how long a mirror is left alone after a failed save, so
// that an API server that is down (a control-plane upgrade, an etcd
// restore) costs one timeout per MirrorRetry, not one per record.
var MirrorRetry = 5 * time.Second

// SaveFunc saves the whole journal text somewhere else.
type SaveFunc func(ctx context.Context, text []byte) error

// mirror is the state of a journal's copy.
type mirror struct {
	mu      sync.Mutex // one save at a time: a longer text is never overwritten by a shorter one
	saveFn  SaveFunc
	timeout time.Duration
	warn    func(string)
	path    string
	saved   int   // length of the text saved last
	err     error // why the copy is behind; nil when it is not
	retryAt time.Time
}

// Mirror makes each later Append also save the whole journal text with
// save, after the record is safe in the file, each save bounded by timeout.
// A failed save is not an error of Append: warn is told of the first failure
// of a streak and of the recovery, and the next record saves the whole text
// again, catching up.
func (j *Journal) Mirror(save SaveFunc, timeout time.Duration, warn func(msg string)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, err := os.ReadFile(j.path)
	if err != nil {
		return fmt.Errorf("reading journal %s: %w", j.path, err)
	}
	j.text = b
	j.m = &mirror{saveFn: save, timeout: timeout, warn: warn, path: j.path}
	return nil
}

// Text is the whole journal as the mirror saves it (nil when not mirrored).
func (j *Journal) Text() []byte { return j.snapshot() }

// FlushMirror saves the copy now if it is behind, back-off or not, and
// says why it is still behind if it is.
func (j *Journal) FlushMirror() error {
	j.mu.Lock()
	m := j.m
	j.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.save(j.snapshot, true)
}

// save brings the copy up to the journal's current text; force ignores the
// back-off.
func (m *mirror) save(snapshot func() []byte, force bool) error {
	msg, err := m.try(snapshot, force)
	if msg != "" && m.warn != nil {
		m.warn(msg) // outside the lock: warn may take its own
	}
	return err
}

func (m *mirror) try(snapshot func() []byte, force bool) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	text := snapshot() // taken under m.mu: saves go out in the order of their texts
	if len(text) <= m.saved {
		return "", nil // a concurrent Append saved this record already
	}
	if m.err != nil && !force && time.Now().Before(m.retryAt) {
		return "", m.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	err := m.saveFn(ctx, text)
	cancel()
	was := m.err
	m.err = err
	if err != nil {
		m.retryAt = time.Now().Add(MirrorRetry)
		if was == nil {
			return fmt.Sprintf("the journal's copy is behind the local journal %s, which has every record: %v; the next record saves it again", m.path, err), err
		}
		return "", err
	}
	m.saved = len(text)
	if was != nil {
		return "the journal's copy caught up with the local journal", nil
	}
	return "", nil
}
