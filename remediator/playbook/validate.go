package playbook

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"go.yaml.in/yaml/v3"
)

// Default step timeouts, by action.
var defaultTimeouts = map[string]time.Duration{
	ActionRestart:        2 * time.Minute,
	ActionRollback:       2 * time.Minute,
	ActionScale:          2 * time.Minute,
	ActionDeletePod:      2 * time.Minute,
	ActionWaitForRollout: 5 * time.Minute,
	ActionVerify:         10 * time.Minute,
	ActionNotify:         30 * time.Second,
	ActionEscalate:       30 * time.Second,
}

// defaultWindow is the budget window when max_runs is set without one.
const defaultWindow = 24 * time.Hour

func (pb *Playbook) applyDefaults() {
	if pb.Guards.MaxRuns > 0 && pb.Guards.Window == 0 {
		pb.Guards.Window = Duration(defaultWindow)
	}
	seen := map[string]int{}
	for i := range pb.Steps {
		s := &pb.Steps[i]
		if s.Name == "" {
			seen[s.Action]++
			s.Name = s.Action
			if n := seen[s.Action]; n > 1 {
				s.Name = fmt.Sprintf("%s-%d", s.Action, n)
			}
		}
		if s.OnFailure == "" {
			s.OnFailure = OnFailureAbort
		}
		if s.Action == ActionVerify && s.OnSuccess == "" {
			s.OnSuccess = OnSuccessStop
		}
		if d, ok := defaultTimeouts[s.Action]; ok && s.Timeout == 0 {
			s.Timeout = Duration(d)
		}
	}
}

// validator collects errors for one playbook file.
type validator struct {
	pb   *Playbook
	doc  *yaml.Node
	errs Errors
}

func (v *validator) addf(path []string, format string, args ...any) {
	v.errs = append(v.errs, Error{
		File: v.pb.File,
		Line: lineOf(v.doc, path...),
		Msg:  fmt.Sprintf(format, args...),
	})
}

func (pb *Playbook) validate(doc *yaml.Node) Errors {
	v := &validator{pb: pb, doc: doc}
	if pb.Version != Version {
		v.addf([]string{"version"}, "version must be %d, got %d", Version, pb.Version)
	}
	if pb.Name == "" {
		v.addf(nil, "name is required")
	} else if !validName(pb.Name) {
		v.addf([]string{"name"}, "name %q must be lowercase letters, digits and '-'", pb.Name)
	}
	v.match()
	v.target()
	v.guards()
	if len(pb.Steps) == 0 {
		v.addf(nil, "steps: at least one step is required")
	}
	names := map[string]bool{}
	for i := range pb.Steps {
		path := []string{"steps", strconv.Itoa(i)}
		s := &pb.Steps[i]
		if names[s.Name] {
			v.addf(append(path, "name"), "step name %q is used twice", s.Name)
		}
		names[s.Name] = true
		v.step(path, s)
	}
	return v.errs
}

func validName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func (v *validator) match() {
	m := v.pb.Match
	if m.Alertname == "" {
		v.addf([]string{"match"}, "match.alertname is required")
	}
	for i, s := range m.Matchers {
		path := []string{"match", "matchers", strconv.Itoa(i)}
		mt, err := labels.ParseMatcher(s)
		if err != nil {
			v.addf(path, "matcher %q: %v", s, err)
			continue
		}
		v.pb.matchers = append(v.pb.matchers, newMatcher(mt))
	}
}

func (v *validator) target() {
	t := v.pb.Target
	path := []string{"target"}
	switch t.Kind {
	case "Deployment", "StatefulSet":
		if t.Name == "" {
			v.addf(path, "target.name is required with kind %s", t.Kind)
		}
		if t.Pod != "" {
			v.addf(append(path, "pod"), "target.pod and target.kind exclude each other: set one")
		}
	case "":
		if t.Pod == "" {
			v.addf(path, "target needs kind (Deployment or StatefulSet) and name, or pod")
		}
		if t.Name != "" {
			v.addf(append(path, "name"), "target.name needs target.kind")
		}
	default:
		v.addf(append(path, "kind"), "target.kind must be Deployment or StatefulSet, got %q", t.Kind)
	}
	if t.Namespace == "" {
		v.addf(path, "target.namespace is required")
	}
	v.pb.target.namespace = v.field(append(path, "namespace"), "namespace", t.Namespace)
	v.pb.target.name = v.field(append(path, "name"), "name", t.Name)
	v.pb.target.pod = v.field(append(path, "pod"), "pod", t.Pod)
}

func (v *validator) tmpl(path []string, name, text string) *template.Template {
	if text == "" {
		return nil
	}
	t, err := parseTemplate(name, text)
	if err != nil {
		v.addf(path, "template %s: %v", name, err)
		return nil
	}
	return t
}

func (v *validator) field(path []string, name, text string) *fieldTemplate {
	if text == "" {
		return nil
	}
	f, err := parseField(name, text)
	if err != nil {
		v.addf(path, "template %s: %v", name, err)
		return nil
	}
	return f
}

func (v *validator) guards() {
	g := v.pb.Guards
	path := []string{"guards"}
	if g.Cooldown < 0 {
		v.addf(append(path, "cooldown"), "guards.cooldown must not be negative")
	}
	if g.MaxRuns < 0 {
		v.addf(append(path, "max_runs"), "guards.max_runs must not be negative")
	}
	if g.Window < 0 {
		v.addf(append(path, "window"), "guards.window must not be negative")
	}
}

func (v *validator) step(path []string, s *Step) {
	if _, ok := defaultTimeouts[s.Action]; !ok {
		v.addf(append(path, "action"), "unknown action %q (want one of %s)",
			s.Action, strings.Join(actionNames(), ", "))
		return
	}
	switch s.OnFailure {
	case OnFailureAbort, OnFailureContinue, OnFailureEscalate:
	default:
		v.addf(append(path, "on_failure"),
			"on_failure must be abort, continue or escalate, got %q", s.OnFailure)
	}
	if s.Timeout <= 0 {
		v.addf(append(path, "timeout"), "timeout must be positive")
	}
	for _, f := range s.misplaced() {
		v.addf(append(path, f), "%s is not a field of a %s step", f, s.Action)
	}
	switch s.Action {
	case ActionScale:
		v.scale(path, s)
	case ActionVerify:
		v.verify(path, s)
	case ActionNotify, ActionEscalate:
		if s.Action == ActionNotify && s.Message == "" {
			v.addf(path, "a notify step needs a message")
		}
		s.message = v.tmpl(append(path, "message"), "message", s.Message)
	}
	if s.Action == ActionRollback && v.pb.Target.Kind == "StatefulSet" {
		v.addf(append(path, "action"), "rollback is only possible for Deployments")
	}
}

func (v *validator) scale(path []string, s *Step) {
	if (s.Replicas == nil) == (s.Delta == nil) {
		v.addf(path, "a scale step needs exactly one of replicas (absolute) or delta (relative)")
	}
	if s.Min != nil && *s.Min < 0 {
		v.addf(append(path, "min"), "min must not be negative")
	}
	if s.Max != nil && *s.Max < 1 {
		v.addf(append(path, "max"), "max must be at least 1")
	}
	if s.Min != nil && s.Max != nil && *s.Min > *s.Max {
		v.addf(append(path, "min"), "min %d is above max %d", *s.Min, *s.Max)
	}
	if s.Replicas != nil && *s.Replicas < 0 {
		v.addf(append(path, "replicas"), "replicas must not be negative")
	}
	if s.Replicas != nil && *s.Replicas == 0 && !s.AllowZero {
		v.addf(append(path, "replicas"), "scaling to 0 needs allow_zero: true")
	}
	if s.Delta != nil && s.Max == nil && *s.Delta > 0 {
		v.addf(path, "a scale step with a positive delta needs max")
	}
}

func (v *validator) verify(path []string, s *Step) {
	if (s.Query == "") != (s.Below == nil) {
		v.addf(path, "a verify step needs both query and below, or neither")
	}
	switch s.OnSuccess {
	case OnSuccessStop, OnSuccessContinue:
	default:
		v.addf(append(path, "on_success"),
			"on_success must be stop or continue, got %q", s.OnSuccess)
	}
}

// misplaced returns the fields set on s that its action does not read.
func (s *Step) misplaced() []string {
	set := map[string]bool{
		"replicas":           s.Replicas != nil,
		"delta":              s.Delta != nil,
		"min":                s.Min != nil,
		"max":                s.Max != nil,
		"allow_zero":         s.AllowZero,
		"raise_hpa_min":      s.RaiseHPAMin,
		"allow_pod_deletion": s.AllowPodDeletion,
		"restart_threshold":  s.RestartThreshold != nil,
		"min_ready":          s.MinReady != nil,
		"query":              s.Query != "",
		"below":              s.Below != nil,
		"on_success":         s.OnSuccess != "" && s.Action != ActionVerify,
		"message":            s.Message != "",
		"dry_run":            s.DryRun,
	}
	allowed := map[string][]string{
		ActionScale:          {"replicas", "delta", "min", "max", "allow_zero", "raise_hpa_min", "dry_run"},
		ActionRestart:        {"allow_pod_deletion", "dry_run"},
		ActionRollback:       {"dry_run"},
		ActionDeletePod:      {"restart_threshold", "min_ready", "dry_run"},
		ActionWaitForRollout: {},
		ActionVerify:         {"query", "below", "on_success"},
		ActionNotify:         {"message"},
		ActionEscalate:       {"message"},
	}[s.Action]
	for _, f := range allowed {
		delete(set, f)
	}
	var out []string
	for f, isSet := range set {
		if isSet {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

func actionNames() []string {
	names := make([]string, 0, len(defaultTimeouts))
	for a := range defaultTimeouts {
		names = append(names, a)
	}
	slices.Sort(names)
	return names
}
