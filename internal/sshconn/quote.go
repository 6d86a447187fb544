package sshconn

import "github.com/runbookhq/runbook/internal/shellquote"

// Quote returns s quoted for a POSIX shell (see package shellquote).
func Quote(s string) string { return shellquote.Quote(s) }

// ShellJoin quotes each element of argv with Quote and joins them with single
// spaces, giving a command line that a POSIX shell splits back into exactly
// argv.
func ShellJoin(argv []string) string { return shellquote.Join(argv) }
