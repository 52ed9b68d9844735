package playbook

import (
	"regexp/syntax"

	"github.com/prometheus/alertmanager/pkg/labels"
)

// matcher is an Alertmanager label matcher with a fast path: a regular
// expression that is only a list of alternatives (`critical|warning`) is
// answered from a set, as Prometheus's own regex matcher does, instead of
// running the regexp engine for every alert.
type matcher struct {
	*labels.Matcher
	set map[string]bool
}

func newMatcher(m *labels.Matcher) matcher {
	mt := matcher{Matcher: m}
	if m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp {
		mt.set = literalSet(m.Value)
	}
	return mt
}

func (m matcher) matches(v string) bool {
	if m.set == nil {
		return m.Matches(v)
	}
	in := m.set[v]
	if m.Type == labels.MatchNotRegexp {
		return !in
	}
	return in
}

// literalSet returns the strings re matches when it is a literal or an
// alternation of literals, and nil otherwise.
func literalSet(re string) map[string]bool {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return nil
	}
	parsed = parsed.Simplify()
	var alts []*syntax.Regexp
	switch parsed.Op {
	case syntax.OpLiteral:
		alts = []*syntax.Regexp{parsed}
	case syntax.OpAlternate:
		alts = parsed.Sub
	default:
		return nil
	}
	set := make(map[string]bool, len(alts))
	for _, a := range alts {
		if a.Op != syntax.OpLiteral || a.Flags&syntax.FoldCase != 0 {
			return nil
		}
		set[string(a.Rune)] = true
	}
	return set
}
