// Package engine is the contract every step kind implements (Kind), the
// expansion of a plan's phases over its nodes into ordered step instances,
// and the walks over them: the read-only plan walk here, the apply walk with
// its journal and lock in later files.
//
// It is not the plan language (package plans), nor any transport: kinds reach
// the cluster and the nodes through the Env they are given, so that an
// organisation can add its own kinds in Go and tests can give fakes.
package engine
