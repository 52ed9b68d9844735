package playbook

import (
	"fmt"
	"testing"
)

// BenchmarkMatch shows that matching one alert costs the same however many
// playbooks are loaded: the set is indexed by alertname.
//
//	go test -run '^$' -bench Match ./remediator/playbook/
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("playbooks=%d", n), func(b *testing.B) {
			pbs := make([]*Playbook, 0, n)
			for i := range n {
				src := fmt.Sprintf("version: 1\nname: pb-%d\nmatch:\n  alertname: Alert%d\n"+
					"  matchers: ['severity=~\"critical|warning\"', 'team!=\"db\"']\n"+
					"target: {kind: Deployment, namespace: shop, name: web}\n"+
					"steps: [{action: restart}]\n", i, i%(n/2+1))
				pb, errs := Parse("bench.yml", []byte(src))
				if len(errs) > 0 {
					b.Fatal(errs)
				}
				pbs = append(pbs, pb)
			}
			set, err := NewSet(pbs...)
			if err != nil {
				b.Fatal(err)
			}
			lbls := map[string]string{"alertname": "Alert1", "severity": "critical", "team": "web"}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if len(set.Match(lbls)) != 2 {
					b.Fatal("want two matches")
				}
			}
		})
	}
}
