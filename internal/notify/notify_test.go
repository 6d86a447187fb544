package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runbookhq/runbook/engine"
)

func TestNotifierPostsChosenEvents(t *testing.T) {
	var mu sync.Mutex
	var got []Payload
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("bad body %s", b)
		}
		mu.Lock()
		got = append(got, p)
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
	}))
	defer srv.Close()
	var errs []error
	n := New("upgrade", []Hook{{Name: "chat", URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer x"}}}, func(err error) { errs = append(errs, err) })
	n.Emit(engine.Event{Type: "run_started", RunID: "r1"})
	n.Emit(engine.Event{Type: engine.EventStepStarted, Address: "step.a"}) // not a default event
	n.Emit(engine.Event{Type: engine.EventStepFailed, Node: "worker-1", Address: `phase.w.step.drain["worker-1"]`, Message: "PDB blocks"})
	n.Emit(engine.Event{Type: "node_done", Node: "worker-2"})
	n.Close()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(got) != 3 {
		t.Fatalf("%d posts, want 3: %+v", len(got), got)
	}
	if !strings.Contains(got[1].Text, `worker-1: phase.w.step.drain["worker-1"] step failed: PDB blocks`) || got[0].Text != "runbook upgrade (run r1): started" {
		t.Errorf("texts: %q, %q", got[0].Text, got[1].Text)
	}
	if auth[0] != "Bearer x" || got[2].Node != "worker-2" {
		t.Errorf("headers %v, node %q", auth, got[2].Node)
	}
}

func TestNotifierNeverBlocksTheRun(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	var mu sync.Mutex
	var errs []string
	n := New("x", []Hook{{URL: srv.URL, Events: []string{"*"}, Timeout: 100 * time.Millisecond}}, func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() })
	start := time.Now()
	for i := 0; i < 1000; i++ {
		n.Emit(engine.Event{Type: "log"})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("emitting took %s", d)
	}
	mu.Lock()
	dropped := 0
	for _, e := range errs {
		if strings.Contains(e, "queue full") {
			dropped++
		}
	}
	mu.Unlock()
	if dropped == 0 {
		t.Fatal("a stuck receiver and 1000 events: nothing reported as dropped")
	}
}
