package cli

import "github.com/agext/levenshtein"

func plansSuggest(name string, candidates []string) string {
	best, bestD := "", 4
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}
