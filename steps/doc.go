// Package steps holds runbook's step kinds, one package per kind (or per
// pair of kinds that undo each other), and package all, which registers them.
// Each kind describes its arguments with plans.KindSchema and implements
// engine.Kind; none of them knows about the CLI or about transports.
package steps
