package journal

import (
	"encoding/json"
	"fmt"

	"github.com/runbookhq/runbook/engine"
	"github.com/runbookhq/runbook/plans"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Recorder writes the engine's step records to a journal, masking secrets.
type Recorder struct{ J *Journal }

var _ engine.Recorder = Recorder{}

func nodeOf(s *engine.AppliedStep) string {
	if s.Node == nil {
		return ""
	}
	return s.Node.Name
}

// StepStarted implements engine.Recorder.
func (r Recorder) StepStarted(s *engine.AppliedStep, attempt int) error {
	return r.J.Append(Record{Type: StepStarted, Address: s.Address, Node: nodeOf(s), Kind: s.Step.Kind, Attempt: attempt, Summary: plans.Mask(s.Summary, s.Secrets)})
}

// StepFinished implements engine.Recorder.
func (r Recorder) StepFinished(s *engine.AppliedStep, outputs cty.Value) error {
	return r.J.Append(Record{Type: StepFinished, Address: s.Address, Node: nodeOf(s), Kind: s.Step.Kind, Action: string(s.Action),
		Summary: plans.Mask(s.Summary, s.Secrets), Outputs: EncodeOutputs(outputs, s.Secrets)})
}

// StepFailed implements engine.Recorder.
func (r Recorder) StepFailed(s *engine.AppliedStep, err error, inDoubt bool) error {
	return r.J.Append(Record{Type: StepFailed, Address: s.Address, Node: nodeOf(s), Kind: s.Step.Kind, Error: plans.Mask(err.Error(), s.Secrets), InDoubt: inDoubt})
}

// StepSkipped implements engine.Recorder.
func (r Recorder) StepSkipped(s *engine.AppliedStep, reason string) error {
	return r.J.Append(Record{Type: StepSkipped, Address: s.Address, Node: nodeOf(s), Kind: s.Step.Kind, Reason: reason})
}

// EncodeOutputs turns known outputs into JSON values, masking secrets.
func EncodeOutputs(v cty.Value, secrets []string) map[string]any {
	if v == cty.NilVal || v.IsNull() || !v.IsWhollyKnown() || !v.Type().IsObjectType() {
		return nil
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	// Masked after decoding, not in the JSON text, where a secret with a
	// quote, backslash, <, > or & is escaped and would not match.
	return maskAny(m, secrets).(map[string]any)
}

func maskAny(v any, secrets []string) any {
	switch v := v.(type) {
	case string:
		return plans.Mask(v, secrets)
	case map[string]any:
		for k, e := range v {
			v[k] = maskAny(e, secrets)
		}
	case []any:
		for i, e := range v {
			v[i] = maskAny(e, secrets)
		}
	}
	return v
}

// DecodeOutputs turns journaled outputs back into a kind's output object.
func DecodeOutputs(m map[string]any, schema *plans.KindSchema) (cty.Value, error) {
	if m == nil {
		return schema.UnknownOutputs(), nil
	}
	ty := schema.UnknownOutputs().Type()
	b, err := json.Marshal(m)
	if err != nil {
		return cty.NilVal, err
	}
	v, err := ctyjson.Unmarshal(b, ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("journaled outputs of a %s step: %w", schema.Name, err)
	}
	return v, nil
}

// Priors converts a journal summary into what the engine needs to resume.
func Priors(sum *Summary, schemaOf func(address string) *plans.KindSchema) map[string]engine.Prior {
	out := map[string]engine.Prior{}
	for addr, st := range sum.Steps {
		p := engine.Prior{}
		switch st.Status {
		case StepFinished:
			p.Status = engine.PriorFinished
			if sc := schemaOf(addr); sc != nil {
				if v, err := DecodeOutputs(st.Outputs, sc); err == nil {
					p.Outputs = v
				}
			}
		case StepSkipped:
			p.Status = engine.PriorSkipped
		case StepFailed:
			p.Status = engine.PriorFailed
		default:
			p.Status = engine.PriorStarted
		}
		out[addr] = p
	}
	return out
}
