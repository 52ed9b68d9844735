package playbook

import (
	"testing"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/stretchr/testify/require"
)

// TestMatcherFastPathAgreesWithRegexp checks that the set fast path answers
// exactly as Alertmanager's regexp matcher does.
func TestMatcherFastPathAgreesWithRegexp(t *testing.T) {
	exprs := []string{
		`severity=~"critical|warning"`,
		`severity!~"critical|warning"`,
		`severity=~"critical"`,
		`severity=~"crit.*"`,
		`severity=~"(?i)critical"`,
		`severity=~"abc|abd"`,
		`severity=~"a|"`,
		`severity=~""`,
	}
	values := []string{"critical", "warning", "Critical", "critical2", "crit", "abc", "abd", "a", "", "warning|critical"}
	for _, e := range exprs {
		t.Run(e, func(t *testing.T) {
			m, err := labels.ParseMatcher(e)
			require.NoError(t, err)
			fast := newMatcher(m)
			for _, v := range values {
				require.Equal(t, m.Matches(v), fast.matches(v), "value %q", v)
			}
		})
	}
	m, err := labels.ParseMatcher(`severity=~"critical|warning"`)
	require.NoError(t, err)
	require.NotNil(t, newMatcher(m).set, "a plain alternation takes the fast path")
}
