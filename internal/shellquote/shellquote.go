// Package shellquote quotes words for a POSIX shell. It is the one quoting
// rule of runbook: what the dry-run prints and what the SSH transport sends
// are built with it, so they are the same bytes.
package shellquote

import "strings"

// Quote returns s quoted for a POSIX shell. Words made only of characters
// no shell treats specially are left bare so commands stay readable.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if isSafeWord(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with single spaces, giving a command
// line a POSIX shell splits back into exactly argv.
func Join(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(a))
	}
	return b.String()
}

// isSafeWord reports whether s needs no quoting. '=' is deliberately not in
// the set (a leading NAME=value word would be an assignment), nor '~'
// (tilde expansion) nor anything glob- or expansion-related.
func isSafeWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == '/', c == ':', c == ',', c == '+', c == '@', c == '%':
		default:
			return false
		}
	}
	return true
}
