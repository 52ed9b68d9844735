package playbook

import "fmt"

// Set is a loaded, validated set of playbooks, indexed by alertname so that
// matching costs the same however many playbooks there are. A Set is never
// changed after it is built; reload builds a new one.
type Set struct {
	all    []*Playbook
	byName map[string][]*Playbook
	byID   map[string]*Playbook
}

func newSet(pbs []*Playbook) (*Set, Errors) {
	s := &Set{
		byName: map[string][]*Playbook{},
		byID:   map[string]*Playbook{},
	}
	var errs Errors
	for _, pb := range pbs {
		if prev, ok := s.byID[pb.Name]; ok {
			errs = append(errs, Error{File: pb.File, Line: pb.Line,
				Msg: fmt.Sprintf("playbook name %q is already used in %s:%d",
					pb.Name, prev.File, prev.Line)})
			continue
		}
		s.byID[pb.Name] = pb
		s.all = append(s.all, pb)
		s.byName[pb.Match.Alertname] = append(s.byName[pb.Match.Alertname], pb)
	}
	return s, errs
}

// NewSet builds a Set from playbooks that Parse returned. It fails when two
// share a name.
func NewSet(pbs ...*Playbook) (*Set, error) {
	s, errs := newSet(pbs)
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// Match returns the playbooks whose alertname and matchers all match the
// alert's labels, in file order.
func (s *Set) Match(lbls map[string]string) []*Playbook {
	var out []*Playbook
	for _, pb := range s.byName[lbls["alertname"]] {
		if pb.Matches(lbls) {
			out = append(out, pb)
		}
	}
	return out
}

// Matches reports whether the alert's labels satisfy the playbook's match.
func (pb *Playbook) Matches(lbls map[string]string) bool {
	if lbls["alertname"] != pb.Match.Alertname {
		return false
	}
	for _, m := range pb.matchers {
		// A missing label matches as the empty string, as in Alertmanager.
		if !m.matches(lbls[m.Name]) {
			return false
		}
	}
	return true
}

// Get returns the playbook called name.
func (s *Set) Get(name string) (*Playbook, bool) {
	pb, ok := s.byID[name]
	return pb, ok
}

// All returns every playbook in file order.
func (s *Set) All() []*Playbook { return append([]*Playbook(nil), s.all...) }

// Len is the number of playbooks.
func (s *Set) Len() int { return len(s.all) }

// Alertnames returns the alertnames that some playbook handles.
func (s *Set) Alertnames() []string {
	out := make([]string, 0, len(s.byName))
	for n := range s.byName {
		out = append(out, n)
	}
	return out
}
