// Package plans is runbook's plan language: it reads HCL files into a static
// model that keeps every source range, evaluates variables and locals, offers
// the functions a plan may call, and reports every mistake as an hcl
// diagnostic at file:line:col.
//
// It is not the engine: it does not resolve inventories against a cluster,
// expand phases over nodes or run anything. Step kinds describe their
// arguments with KindSchema so that this package can check a plan without
// knowing what the kinds do.
package plans
