package email

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wneessen/go-mail"

	"github.com/companion/remediator/notifier"
)

// maxSubject bounds the subject, in characters, before encoding.
const maxSubject = 160

// compose builds the message of an event.
func (s *Sender) compose(to []string, ev notifier.Event) (*mail.Msg, error) {
	m := mail.NewMsg(mail.WithCharset(mail.CharsetUTF8), mail.WithEncoding(mail.EncodingQP))
	if err := m.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("email from %q: %w", s.cfg.From, err)
	}
	if err := m.To(to...); err != nil {
		return nil, fmt.Errorf("email recipients: %w", err)
	}
	m.Subject(subject(ev))
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	m.SetDateWithValue(at)
	m.SetMessageID()
	m.SetGenHeader("Auto-Submitted", "auto-generated")

	v := view(ev)
	var html strings.Builder
	if err := page.Execute(&html, v); err != nil {
		return nil, fmt.Errorf("render email of incident %s: %w", ev.Incident.ID, err)
	}
	m.SetBodyString(mail.TypeTextPlain, plainText(v))
	m.AddAlternativeString(mail.TypeTextHTML, html.String())
	return m, nil
}

// headerSafe turns text from an alert into one header-safe line: every
// control character (CR and LF included) becomes a space, runs of spaces
// fold into one, and the result is cut to max characters.
func headerSafe(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// subject is "[severity] Alert on target: what happened".
func subject(ev notifier.Event) string {
	inc := ev.Incident
	what := string(ev.Kind)
	switch ev.Kind {
	case notifier.Escalate:
		what = ev.Text
	case notifier.Acknowledged:
		what = "acknowledged by " + ev.By
	}
	s := inc.AlertName
	if inc.Target != "" {
		s += " on " + inc.Target
	}
	if inc.Severity != "" {
		s = "[" + inc.Severity + "] " + s
	}
	return headerSafe(s+": "+what, maxSubject)
}

// mailView is what both parts of a message show.
type mailView struct {
	Title       string
	Headline    string
	Facts       [][2]string
	Summary     string
	Annotations [][2]string
	Labels      string
	Links       [][2]string
	AckHint     string
}

func view(ev notifier.Event) mailView {
	inc := ev.Incident
	v := mailView{
		Title:    headerSafe(inc.AlertName+" on "+inc.Target, maxSubject),
		Headline: headline(ev),
		Summary:  inc.Summary,
	}
	add := func(k, val string) {
		if val != "" {
			v.Facts = append(v.Facts, [2]string{k, val})
		}
	}
	add("Severity", inc.Severity)
	add("Target", inc.Target)
	add("Playbook", inc.Playbook)
	add("Incident", inc.ID)
	if !inc.OpenedAt.IsZero() {
		add("Opened", inc.OpenedAt.UTC().Format(time.RFC1123))
	}
	for _, k := range sortedKeys(inc.Annotations) {
		v.Annotations = append(v.Annotations, [2]string{k, inc.Annotations[k]})
	}
	var labels []string
	for _, k := range sortedKeys(inc.Labels) {
		labels = append(labels, k+"="+inc.Labels[k])
	}
	v.Labels = strings.Join(labels, ", ")
	links := [][2]string{{"Alertmanager", inc.ExternalURL}, {"Alert source", inc.GeneratorURL}}
	for _, l := range links {
		if strings.HasPrefix(l[1], "http://") || strings.HasPrefix(l[1], "https://") {
			v.Links = append(v.Links, l)
		}
	}
	if ev.Kind == notifier.Escalate {
		v.AckHint = "Acknowledge with the button in Slack or POST /api/v1/incidents/" +
			inc.ID + "/ack to stop the escalation."
	}
	return v
}

func headline(ev notifier.Event) string {
	switch ev.Kind {
	case notifier.Escalate:
		return ev.Text
	case notifier.Acknowledged:
		return "Acknowledged by " + ev.By + ". The escalation has stopped."
	case notifier.Resolved:
		return "Resolved. The escalation has stopped."
	default:
		if ev.Text != "" {
			return string(ev.Kind) + ": " + ev.Text
		}
		return string(ev.Kind)
	}
}

func plainText(v mailView) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n\n", v.Title, v.Headline)
	for _, f := range v.Facts {
		fmt.Fprintf(&b, "%s: %s\n", f[0], f[1])
	}
	if v.Summary != "" {
		fmt.Fprintf(&b, "\n%s\n", v.Summary)
	}
	if len(v.Annotations) > 0 {
		b.WriteString("\nAnnotations:\n")
		for _, a := range v.Annotations {
			fmt.Fprintf(&b, "  %s: %s\n", a[0], a[1])
		}
	}
	if v.Labels != "" {
		fmt.Fprintf(&b, "\nLabels: %s\n", v.Labels)
	}
	if len(v.Links) > 0 {
		b.WriteString("\n")
		for _, l := range v.Links {
			fmt.Fprintf(&b, "%s: %s\n", l[0], l[1])
		}
	}
	if v.AckHint != "" {
		fmt.Fprintf(&b, "\n%s\n", v.AckHint)
	}
	return b.String()
}

// page is the HTML part; html/template escapes everything from the alert.
var page = template.Must(template.New("email").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif">
<h2>{{.Title}}</h2>
<p><strong>{{.Headline}}</strong></p>
<table>{{range .Facts}}<tr><th align="left">{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}</table>
{{with .Summary}}<p style="white-space: pre-wrap">{{.}}</p>{{end}}
{{with .Annotations}}<h3>Annotations</h3><dl>{{range .}}
<dt>{{index . 0}}</dt><dd style="white-space: pre-wrap">{{index . 1}}</dd>{{end}}</dl>{{end}}
{{with .Labels}}<p><small>Labels: {{.}}</small></p>{{end}}
{{range .Links}}<p><a href="{{index . 1}}">{{index . 0}}</a></p>
{{end}}{{with .AckHint}}<p>{{.}}</p>{{end}}
</body></html>
`))

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
