package engine

import (
	"context"
	"io"
	"time"

	"github.com/runbookhq/runbook/internal/shellquote"
)

// Command is a command for a node. Shell() is exactly what is sent to the
// node's shell, so that what the dry-run prints is what runs.
type Command struct {
	// Argv is quoted word by word; Script is passed to `sh -c` as one
	// quoted argument. Set one of them.
	Argv   []string
	Script string
	// Sudo runs the command through `sudo -n`, which fails at once instead
	// of waiting for a password nobody will type.
	Sudo  bool
	Stdin []byte
	// Stdout, if set, receives standard output byte for byte (a file
	// copied off the node) instead of Result.Stdout.
	Stdout  io.Writer `json:"-"`
	Timeout time.Duration
	// OnLine receives output as it arrives, line by line.
	OnLine func(stream, line string) `json:"-"`
}

// Shell renders the command for a POSIX shell, every value quoted.
func (c Command) Shell() string {
	var body string
	if c.Script != "" {
		body = "sh -c " + Quote(c.Script)
	} else {
		body = ShellJoin(c.Argv)
	}
	if c.Sudo {
		return "sudo -n -- " + body
	}
	return body
}

// Result is how a command ended. A non-zero exit is a result, not an error.
type Result struct {
	ExitCode  int
	Stdout    string
	Stderr    string
	Truncated bool
	Duration  time.Duration
}

// Runner runs commands on one node. Errors mean the command's fate is not
// known (transport failure): the step is in doubt, not failed.
type Runner interface {
	Run(ctx context.Context, cmd Command) (*Result, error)
}

// Quote quotes s for a POSIX shell; words made only of safe characters are
// left as they are so that commands stay readable.
func Quote(s string) string { return shellquote.Quote(s) }

// ShellJoin quotes each word and joins them with spaces.
func ShellJoin(argv []string) string { return shellquote.Join(argv) }
