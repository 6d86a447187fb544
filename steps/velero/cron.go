package velero

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cronField is one field of a standard cron expression.
type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day of week", min: 0, max: 6, names: map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

var cronDescriptors = map[string]bool{"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true, "@daily": true, "@midnight": true, "@hourly": true}

const cronHelp = `a cron schedule has 5 fields, minute hour day-of-month month day-of-week ("0 0 * * *" is every day at midnight), or is a descriptor such as @daily or "@every 6h"`

// validateCron checks a schedule as Velero's server parses it (the
// standard five fields, as robfig/cron's ParseStandard reads them: lists,
// ranges, steps, month and weekday names, ?, descriptors and @every, an
// optional CRON_TZ= or TZ= prefix), so that a schedule Velero would mark
// FailedValidation is refused when the plan is made.
func validateCron(spec string) error {
	s := strings.TrimSpace(spec)
	if s == "" {
		return fmt.Errorf("the schedule is empty: %s", cronHelp)
	}
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		i := strings.IndexByte(s, ' ')
		if i < 0 || strings.TrimSpace(s[i:]) == "" {
			return fmt.Errorf("%q: a time zone but no schedule after it", spec)
		}
		if tz := s[strings.IndexByte(s, '=')+1 : i]; tz == "" {
			return fmt.Errorf("%q: an empty time zone", spec)
		}
		s = strings.TrimSpace(s[i:])
	}
	if strings.HasPrefix(s, "@") {
		if strings.HasPrefix(s, "@every ") {
			d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(s, "@every ")))
			if err != nil || d <= 0 {
				return fmt.Errorf("%q: @every takes a positive duration such as \"6h\" or \"90m\"", spec)
			}
			return nil
		}
		if !cronDescriptors[s] {
			return fmt.Errorf("%q is not a descriptor Velero knows (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every DURATION)", spec)
		}
		return nil
	}
	fs := strings.Fields(s)
	if len(fs) != len(cronFields) {
		return fmt.Errorf("%q has %d fields: %s", spec, len(fs), cronHelp)
	}
	for i, f := range fs {
		if err := cronFields[i].check(f); err != nil {
			return fmt.Errorf("%q: %s field %q: %v", spec, cronFields[i].name, f, err)
		}
	}
	return nil
}

func (cf cronField) check(f string) error {
	for _, part := range strings.Split(f, ",") {
		if part == "" {
			return fmt.Errorf("an empty list element")
		}
		rng, step, hasStep := strings.Cut(part, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n <= 0 {
				return fmt.Errorf("step %q is not a positive number", step)
			}
		}
		if rng == "*" || rng == "?" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cf.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		b, err := cf.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range %d-%d ends before it begins", a, b)
		}
	}
	return nil
}

func (cf cronField) value(s string) (int, error) {
	if v, ok := cf.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		if cf.names != nil {
			return 0, fmt.Errorf("%q is neither a number from %d to %d nor a name", s, cf.min, cf.max)
		}
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, cf.min, cf.max)
	}
	if n < cf.min || n > cf.max {
		return 0, fmt.Errorf("%d is outside %d-%d", n, cf.min, cf.max)
	}
	return n, nil
}
