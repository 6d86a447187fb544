// Package notify posts run events to webhooks declared in a plan's notify
// blocks: JSON with the event's fields and a "text" line that
// Slack-compatible receivers show. Posting never blocks or fails the run:
// events queue (bounded), each post has a timeout, failures are reported
// back as events.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/runbookhq/runbook/engine"
)

// DefaultEvents are posted when a notify block does not choose.
var DefaultEvents = []string{"run_started", "node_done", "node_failed", engine.EventStepFailed, "run_finished"}

// Hook is one webhook.
type Hook struct {
	Name    string
	URL     string
	Events  []string
	Headers map[string]string
	Timeout time.Duration
}

// Payload is what a hook receives.
type Payload struct {
	engine.Event
	Runbook string `json:"runbook"`
	Text    string `json:"text"`
}

// Notifier fans events out to hooks.
type Notifier struct {
	hooks   []Hook
	runbook string
	client  *http.Client
	queue   chan Payload
	wg      sync.WaitGroup
	onError func(error)
}

// New starts a notifier; Close drains it.
func New(runbook string, hooks []Hook, onError func(error)) *Notifier {
	n := &Notifier{hooks: hooks, runbook: runbook, client: &http.Client{}, queue: make(chan Payload, 256), onError: onError}
	n.wg.Add(1)
	go n.loop()
	return n
}

// Emit queues an event for the hooks that want it; a full queue drops it
// (reported), so a slow receiver never slows the run.
func (n *Notifier) Emit(e engine.Event) {
	if n == nil || len(n.hooks) == 0 {
		return
	}
	p := Payload{Event: e, Runbook: n.runbook, Text: Text(n.runbook, e)}
	select {
	case n.queue <- p:
	default:
		if n.onError != nil {
			n.onError(fmt.Errorf("notify: queue full, dropped a %s event", e.Type))
		}
	}
}

func (n *Notifier) loop() {
	defer n.wg.Done()
	for p := range n.queue {
		for _, h := range n.hooks {
			if !wants(h, p.Type) {
				continue
			}
			if err := n.post(h, p); err != nil && n.onError != nil {
				n.onError(fmt.Errorf("notify %s: %w", h.Name, err))
			}
		}
	}
}

func wants(h Hook, typ string) bool {
	evs := h.Events
	if len(evs) == 0 {
		evs = DefaultEvents
	}
	for _, e := range evs {
		if e == typ || e == "*" {
			return true
		}
	}
	return false
}

func (n *Notifier) post(h Hook, p Payload) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	t := h.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), t)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	keys := make([]string, 0, len(h.Headers))
	for k := range h.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		req.Header.Set(k, h.Headers[k])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s answered %s", h.URL, resp.Status)
	}
	return nil
}

// Close posts what is queued (each post bounded by its timeout) and stops.
func (n *Notifier) Close() {
	if n == nil {
		return
	}
	close(n.queue)
	n.wg.Wait()
}

// Text is the one-line summary chat receivers show.
func Text(runbook string, e engine.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "runbook %s", runbook)
	if e.RunID != "" {
		fmt.Fprintf(&b, " (run %s)", e.RunID)
	}
	b.WriteString(": ")
	switch e.Type {
	case "run_started":
		b.WriteString("started")
	case "run_finished":
		b.WriteString("finished: " + e.Message)
	case "node_done":
		b.WriteString(e.Node + " done")
	default:
		if e.Node != "" {
			b.WriteString(e.Node + ": ")
		}
		if e.Address != "" {
			b.WriteString(e.Address + " ")
		}
		b.WriteString(strings.ReplaceAll(e.Type, "_", " "))
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
	}
	return b.String()
}
