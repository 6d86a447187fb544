// Package journal is the run journal: an append-only JSON-lines file, one
// record per event that matters for resume (a step started, finished,
// failed or was skipped; a node's state before the run changed it), each
// record fsync'd before the run goes on. A torn last line, as a crash can
// leave, is ignored on reading; damage anywhere else is an error.
//
// It is not a log: records carry only what resume and reports need, with
// secrets already masked by the caller.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Record types.
const (
	RunStarted   = "run_started"
	RunFinished  = "run_finished"
	NodeState    = "node_state"
	StepStarted  = "step_started"
	StepFinished = "step_finished"
	StepFailed   = "step_failed"
	StepSkipped  = "step_skipped"
	Event        = "event"
)

// Record is one line of the journal.
type Record struct {
	Time     time.Time      `json:"time"`
	Type     string         `json:"type"`
	RunID    string         `json:"run_id,omitempty"`
	Runbook  string         `json:"runbook,omitempty"`
	PlanHash string         `json:"plan_hash,omitempty"`
	VarsHash string         `json:"vars_hash,omitempty"`
	Files    []string       `json:"files,omitempty"`
	Address  string         `json:"address,omitempty"`
	Node     string         `json:"node,omitempty"`
	Kind     string         `json:"kind,omitempty"`
	Attempt  int            `json:"attempt,omitempty"`
	Action   string         `json:"action,omitempty"`
	Summary  string         `json:"summary,omitempty"`
	Outputs  map[string]any `json:"outputs,omitempty"`
	Error    string         `json:"error,omitempty"`
	InDoubt  bool           `json:"in_doubt,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Status   string         `json:"status,omitempty"`
	State    map[string]any `json:"state,omitempty"`
	Message  string         `json:"message,omitempty"`
}

// Journal appends records to one run's file.
type Journal struct {
	mu   sync.Mutex
	f    *os.File
	path string
	text []byte  // the whole journal, kept only while mirrored
	m    *mirror // nil: the file only
}

// Dir is where a plan's journals live: .runbook/<runbook name>/ beside the
// plan.
func Dir(planDir, runbook string) string {
	return filepath.Join(planDir, ".runbook", sanitize(runbook))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// Path is the journal file of a run.
func Path(dir, runID string) string { return filepath.Join(dir, runID+".jsonl") }

// Open opens (creating) a run's journal for appending.
func Open(dir, runID string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal directory: %w", err)
	}
	p := Path(dir, runID)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	// A torn last line from a crash is cut off, so that the records this
	// run appends next follow whole lines and the journal stays readable.
	if err := cutTornTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("repairing journal %s: %w", p, err)
	}
	return &Journal{f: f, path: p}, nil
}

func cutTornTail(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	// Records are small; the torn part is within the last 16 MiB.
	n := min(st.Size(), 16<<20)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, st.Size()-n); err != nil && err != io.EOF {
		return err
	}
	if buf[len(buf)-1] == '\n' {
		return nil
	}
	keep := st.Size() - n + int64(bytes.LastIndexByte(buf, '\n')+1)
	return f.Truncate(keep)
}

// Path is the file this journal writes.
func (j *Journal) Path() string { return j.path }

// Append writes one record and fsyncs it; a mirrored journal then saves
// its copy (see Mirror), whose failures are warnings, never errors.
func (j *Journal) Append(r Record) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("journal record: %w", err)
	}
	b = append(b, '\n')
	m, err := j.write(b)
	if err != nil || m == nil {
		return err
	}
	// Outside the file's lock: a slow API server delays only this caller's
	// record, not the other nodes' writes to the file.
	m.save(j.snapshot, false)
	return nil
}

func (j *Journal) write(b []byte) (*mirror, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(b); err != nil {
		return nil, fmt.Errorf("writing journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return nil, fmt.Errorf("syncing journal %s: %w", j.path, err)
	}
	if j.m != nil {
		j.text = append(j.text, b...)
	}
	return j.m, nil
}

// snapshot is the text so far; appends never change it (they write past
// its length).
func (j *Journal) snapshot() []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.text[:len(j.text):len(j.text)]
}

// Close closes the file.
func (j *Journal) Close() error { return j.f.Close() }

// Read reads a journal. A torn last line is dropped; a bad line elsewhere
// is an error naming it.
func Read(path string) ([]Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(b), path)
}

// Parse reads records from r.
func Parse(r io.Reader, name string) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var bad error
	line := 0
	for sc.Scan() {
		line++
		t := bytes.TrimSpace(sc.Bytes())
		if len(t) == 0 {
			continue
		}
		if bad != nil {
			return nil, bad // a bad line followed by more lines: not a torn tail
		}
		var rec Record
		if err := json.Unmarshal(t, &rec); err != nil {
			bad = fmt.Errorf("%s:%d: damaged journal record: %v", name, line, err)
			continue
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// StepState is what the journal says about one step instance.
type StepState struct {
	Address  string
	Status   string // StepStarted (in doubt), StepFinished, StepFailed, StepSkipped
	Attempts int
	Outputs  map[string]any
	Error    string
	InDoubt  bool
}

// Summary is a journal folded into the state of each step and node.
type Summary struct {
	RunID, Runbook, PlanHash, VarsHash string
	Started                            time.Time
	Finished                           bool
	Status                             string
	Steps                              map[string]*StepState
	Nodes                              map[string]map[string]any // node -> state recorded before the first change
	Records                            []Record
}

// Fold summarises records.
func Fold(recs []Record) *Summary {
	s := &Summary{Steps: map[string]*StepState{}, Nodes: map[string]map[string]any{}, Records: recs}
	for _, r := range recs {
		switch r.Type {
		case RunStarted:
			if s.RunID == "" {
				s.RunID, s.Runbook, s.PlanHash, s.VarsHash, s.Started = r.RunID, r.Runbook, r.PlanHash, r.VarsHash, r.Time
			}
			s.Finished, s.Status = false, ""
		case RunFinished:
			s.Finished, s.Status = true, r.Status
		case NodeState:
			if _, seen := s.Nodes[r.Node]; !seen {
				s.Nodes[r.Node] = r.State
			}
		case StepStarted, StepFinished, StepFailed, StepSkipped:
			st := s.Steps[r.Address]
			if st == nil {
				st = &StepState{Address: r.Address}
				s.Steps[r.Address] = st
			}
			st.Status = r.Type
			switch r.Type {
			case StepStarted:
				st.Attempts++
			case StepFinished:
				st.Outputs, st.Error, st.InDoubt = r.Outputs, "", false
			case StepFailed:
				st.Error, st.InDoubt = r.Error, r.InDoubt
			}
		}
	}
	return s
}

// Latest returns the newest journal in dir (by modification time), or "".
func Latest(dir string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil || len(m) == 0 {
		return "", err
	}
	type fi struct {
		p string
		t time.Time
	}
	var fs []fi
	for _, p := range m {
		st, err := os.Stat(p)
		if err == nil {
			fs = append(fs, fi{p, st.ModTime()})
		}
	}
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].t.Equal(fs[j].t) {
			return fs[i].p > fs[j].p
		}
		return fs[i].t.After(fs[j].t)
	})
	if len(fs) == 0 {
		return "", errors.New("no readable journal")
	}
	return fs[0].p, nil
}
