package engine

import "time"

// Event is one thing that happened during a run, for the live view, the
// JSON event stream, notifications and the journal.
type Event struct {
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	RunID   string         `json:"run_id,omitempty"`
	Address string         `json:"address,omitempty"`
	Node    string         `json:"node,omitempty"`
	Kind    string         `json:"kind,omitempty"`
	Step    string         `json:"step,omitempty"`
	Message string         `json:"message,omitempty"`
	Fields  map[string]any `json:"fields,omitempty"`
}

// Event types.
const (
	EventStepStarted  = "step_started"
	EventStepFinished = "step_finished"
	EventStepFailed   = "step_failed"
	EventStepSkipped  = "step_skipped"
	EventStepLog      = "log"
	EventRetry        = "retry"
)
