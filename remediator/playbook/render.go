package playbook

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/companion/remediator/remediator/action"
)

// Reasons a target cannot be rendered. They are fixed words, safe as
// metric label values.
const (
	ReasonMissingLabel        = "missing_label"
	ReasonInvalidTarget       = "invalid_target"
	ReasonNamespaceNotAllowed = "namespace_not_allowed"
)

// TargetError says why a playbook's target could not be rendered for an
// alert. Reason is one of the Reason constants.
type TargetError struct {
	Reason string
	Err    error
}

func (e *TargetError) Error() string { return e.Err.Error() }
func (e *TargetError) Unwrap() error { return e.Err }

type targetTemplates struct {
	namespace, name, pod *fieldTemplate
}

// fieldTemplate renders one target field. The common forms, a literal or
// a single {{ .Labels.name }}, skip text/template: rendering targets is on
// the webhook's hot path.
type fieldTemplate struct {
	name    string
	literal string
	label   string
	tmpl    *template.Template
}

var singleLabel = regexp.MustCompile(`^\{\{-?\s*\.Labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*-?\}\}$`)

func parseField(name, text string) (*fieldTemplate, error) {
	t, err := parseTemplate(name, text)
	if err != nil {
		return nil, err
	}
	f := &fieldTemplate{name: name, tmpl: t}
	if m := singleLabel.FindStringSubmatch(text); m != nil {
		f.label = m[1]
	} else if !strings.Contains(text, "{{") {
		f.literal = text
	}
	return f, nil
}

func (f *fieldTemplate) execute(d Data) (string, error) {
	switch {
	case f.label != "":
		v, ok := d.Labels[f.label]
		if !ok {
			return "", fmt.Errorf("label %q is missing: map has no entry for key %q", f.label, f.label)
		}
		return v, nil
	case f.literal != "":
		return f.literal, nil
	}
	var b strings.Builder
	err := f.tmpl.Execute(&b, d)
	return b.String(), err
}

// Data is what templates see: {{ .Labels.namespace }}, {{ .Annotations.summary }}.
type Data struct {
	Labels      map[string]string
	Annotations map[string]string
}

func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	if err := checkFields(t.Tree.Root); err != nil {
		return nil, err
	}
	return t, nil
}

// checkFields refuses a field other than .Labels and .Annotations, so a
// typo such as {{ .Labls.x }} fails at load time and not on every alert.
func checkFields(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkFields(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return checkFields(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkFields(c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkFields(a); err != nil {
				return err
			}
		}
	case *parse.FieldNode:
		if f := n.Ident[0]; f != "Labels" && f != "Annotations" {
			return fmt.Errorf("unknown field .%s: templates see .Labels and .Annotations", f)
		}
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.RangeNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	if err := checkFields(b.Pipe); err != nil {
		return err
	}
	if err := checkFields(b.List); err != nil {
		return err
	}
	return checkFields(b.ElseList)
}

// RenderTarget renders the playbook's target from the alert and checks it:
// every referenced label must exist, names must be valid Kubernetes names,
// and the namespace must be in allowed. Label values are untrusted: nothing
// they contain can widen what the playbook may touch.
func (pb *Playbook) RenderTarget(d Data, allowed map[string]bool) (action.Target, error) {
	t := action.Target{Kind: pb.Target.Kind}
	var err error
	if t.Namespace, err = render(pb.target.namespace, d); err != nil {
		return t, err
	}
	if t.Name, err = render(pb.target.name, d); err != nil {
		return t, err
	}
	if t.Pod, err = render(pb.target.pod, d); err != nil {
		return t, err
	}
	if msgs := validation.IsDNS1123Label(t.Namespace); len(msgs) > 0 {
		return t, invalid("namespace", t.Namespace, msgs)
	}
	if t.Name != "" {
		if msgs := validation.IsDNS1123Subdomain(t.Name); len(msgs) > 0 {
			return t, invalid("name", t.Name, msgs)
		}
	}
	if t.Pod != "" {
		if msgs := validation.IsDNS1123Subdomain(t.Pod); len(msgs) > 0 {
			return t, invalid("pod", t.Pod, msgs)
		}
	}
	if !allowed[t.Namespace] {
		return t, &TargetError{Reason: ReasonNamespaceNotAllowed,
			Err: fmt.Errorf("namespace %q is not in the allow-list", t.Namespace)}
	}
	return t, nil
}

func render(t *fieldTemplate, d Data) (string, error) {
	if t == nil {
		return "", nil
	}
	out, err := t.execute(d)
	if err != nil {
		reason := ReasonInvalidTarget
		if strings.Contains(err.Error(), "no entry for key") {
			reason = ReasonMissingLabel
		}
		return "", &TargetError{Reason: reason,
			Err: fmt.Errorf("render target %s: %w", t.name, err)}
	}
	if out == "" {
		return "", &TargetError{Reason: ReasonMissingLabel,
			Err: fmt.Errorf("render target %s: empty result", t.name)}
	}
	return out, nil
}

func invalid(field, value string, msgs []string) error {
	return &TargetError{Reason: ReasonInvalidTarget,
		Err: fmt.Errorf("target %s %q is not a valid Kubernetes name: %s",
			field, truncate(value, 80), strings.Join(msgs, "; "))}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// RenderMessage renders a notify or escalate step's message.
func (s *Step) RenderMessage(d Data) (string, error) {
	if s.message == nil {
		return "", nil
	}
	var b strings.Builder
	if err := s.message.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render message of step %s: %w", s.Name, err)
	}
	return b.String(), nil
}

// Params turns the step's fields into executor parameters.
func (s *Step) Params() action.Params {
	p := action.Params{
		Replicas:         s.Replicas,
		Delta:            s.Delta,
		AllowZero:        s.AllowZero,
		RaiseHPAMin:      s.RaiseHPAMin,
		AllowPodDeletion: s.AllowPodDeletion,
		Timeout:          time.Duration(s.Timeout),
	}
	if s.Min != nil {
		p.Min = *s.Min
	}
	if s.Max != nil {
		p.Max = *s.Max
	}
	if s.RestartThreshold != nil {
		p.RestartThreshold = *s.RestartThreshold
	}
	if s.MinReady != nil {
		p.MinReady = *s.MinReady
	}
	return p
}
