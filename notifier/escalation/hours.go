package escalation

import (
	"strings"
	"time"
)

// calendar answers when business and quiet hours hold, in one time zone.
type calendar struct {
	loc       *time.Location
	days      map[time.Weekday]bool
	busyStart int // minutes after midnight
	busyEnd   int
	quietFrom int
	quietTo   int
}

// newCalendar builds the calendar of a validated config.
func newCalendar(c Config) (*calendar, error) {
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return nil, err
	}
	cal := &calendar{loc: loc, days: map[time.Weekday]bool{}}
	for _, d := range c.BusinessDays {
		cal.days[weekdays[strings.ToLower(d)]] = true
	}
	cal.busyStart, _ = clockMinutes(c.BusinessHours.Start)
	cal.busyEnd, _ = clockMinutes(c.BusinessHours.End)
	cal.quietFrom, _ = clockMinutes(c.QuietHours.Start)
	cal.quietTo, _ = clockMinutes(c.QuietHours.End)
	return cal, nil
}

// within reports whether minute m of the day lies in [from, to), a window
// that may run over midnight.
func within(m, from, to int) bool {
	if from < to {
		return m >= from && m < to
	}
	return m >= from || m < to
}

func minuteOf(t time.Time) int { return t.Hour()*60 + t.Minute() }

// at returns the time on t's day at minute m of the day.
func at(t time.Time, m int) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), m/60, m%60, 0, 0, t.Location())
}

// business reports whether t, in the calendar's zone, is in business
// hours. Business hours that run over midnight belong to the day they start.
func (c *calendar) business(t time.Time) bool {
	t = t.In(c.loc)
	m := minuteOf(t)
	if !within(m, c.busyStart, c.busyEnd) {
		return false
	}
	day := t.Weekday()
	if c.busyStart > c.busyEnd && m < c.busyEnd {
		day = t.AddDate(0, 0, -1).Weekday()
	}
	return c.days[day]
}

// nextBusiness returns t if it is in business hours, else the next start of
// business hours after t. With no business days it returns t.
func (c *calendar) nextBusiness(t time.Time) time.Time {
	if len(c.days) == 0 || c.business(t) {
		return t
	}
	local := t.In(c.loc)
	for i := 0; i <= 8; i++ {
		day := local.AddDate(0, 0, i)
		start := at(day, c.busyStart)
		if start.After(t) && c.days[start.Weekday()] {
			return start
		}
	}
	return t
}

// quiet reports whether t is within quiet hours.
func (c *calendar) quiet(t time.Time) bool {
	return within(minuteOf(t.In(c.loc)), c.quietFrom, c.quietTo)
}

// afterQuiet returns t outside quiet hours, else the end of the quiet hours
// t lies in.
func (c *calendar) afterQuiet(t time.Time) time.Time {
	if !c.quiet(t) {
		return t
	}
	local := t.In(c.loc)
	end := at(local, c.quietTo)
	if !end.After(t) {
		end = at(local.AddDate(0, 0, 1), c.quietTo)
	}
	return end
}

// hold moves t to when a step with the given When rule may be sent.
func (c *calendar) hold(t time.Time, when string) time.Time {
	switch when {
	case BusinessHours:
		return c.nextBusiness(t)
	case OutsideQuietHours:
		return c.afterQuiet(t)
	default:
		return t
	}
}
