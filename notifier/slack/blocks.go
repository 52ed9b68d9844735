package slack

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/companion/remediator/notifier"
)

// Slack's limits, in characters, for the parts of a message this package
// fills.
const (
	maxHeader      = 150
	maxSectionText = 3000
	maxField       = 2000
	maxButtonText  = 75
	maxButtonValue = 2000
	maxURL         = 3000
	maxContext     = 3000
	maxFallback    = 3000
)

// Actions carried by the buttons of a message. A click's value is
// ButtonValue(action, incident); its action_id is "remediator_" + action.
const (
	ActionAck     = "ack"
	ActionApprove = "approve"
	ActionDeny    = "deny"
)

// ButtonValue is the value of a button: the action and the incident ID.
func ButtonValue(action, incidentID string) string {
	return action + ":" + incidentID
}

// ParseButtonValue splits a button's value into action and incident ID.
func ParseButtonValue(v string) (action, incidentID string, err error) {
	action, incidentID, ok := strings.Cut(v, ":")
	switch {
	case !ok || incidentID == "":
		return "", "", fmt.Errorf("button value %q: want action:incident", v)
	case action != ActionAck && action != ActionApprove && action != ActionDeny:
		return "", "", fmt.Errorf("button value %q: unknown action %q", v, action)
	}
	return action, incidentID, nil
}

// cut shortens s to at most max characters, cutting between characters and
// ending in an ellipsis. It never leaves half of an &amp;-style entity.
func cut(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	kept := string(runes[:max-1])
	if amp := strings.LastIndexByte(kept, '&'); amp >= 0 && len(kept)-amp <= 5 &&
		!strings.Contains(kept[amp:], ";") {
		kept = kept[:amp]
	}
	return kept + "…"
}

// escape makes text from an alert safe for mrkdwn: it cannot mention
// anyone or form links.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// field is one "*Name*\nvalue" field of a section, cut to Slack's limit.
func field(name, value string) *slack.TextBlockObject {
	if value == "" {
		value = "-"
	}
	return mrkdwn(cut("*"+name+"*\n"+escape(value), maxField))
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func button(action, id, label string, style slack.Style) *slack.ButtonBlockElement {
	b := slack.NewButtonBlockElement("remediator_"+action,
		cut(ButtonValue(action, id), maxButtonValue), plain(cut(label, maxButtonText)))
	if style != "" {
		b = b.WithStyle(style)
	}
	return b
}

// linkButton opens u; it is left out unless u is an http(s) URL within
// Slack's limit.
func linkButton(actionID, label, u string) *slack.ButtonBlockElement {
	p, err := url.Parse(u)
	if u == "" || err != nil || (p.Scheme != "http" && p.Scheme != "https") ||
		utf8.RuneCountInString(u) > maxURL {
		return nil
	}
	return slack.NewButtonBlockElement(actionID, "", plain(label)).WithURL(u)
}

// head renders the incident's main message from its thread state.
func head(th thread) []slack.Block {
	inc := th.Incident
	title := fmt.Sprintf("%s %s: %s", stateEmoji[th.State], inc.AlertName, stateText(th))
	fields := []*slack.TextBlockObject{
		field("Severity", inc.Severity), field("Target", inc.Target),
		field("Playbook", inc.Playbook), field("Status", stateText(th)),
	}
	if th.Escalation != "" {
		fields = append(fields, field("Escalation", th.Escalation))
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(cut(title, maxHeader))),
		slack.NewSectionBlock(nil, fields, nil),
	}
	if s := summary(inc); s != "" {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(cut(escape(s), maxSectionText)), nil, nil))
	}
	if len(th.Steps) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(stepsText(th.Steps)), nil, nil))
	}
	if a := actions(th); a != nil {
		blocks = append(blocks, a)
	}
	ctx := fmt.Sprintf("Incident %s", escape(inc.ID))
	if !inc.OpenedAt.IsZero() {
		ctx += " · opened " + inc.OpenedAt.UTC().Format("2006-01-02 15:04 MST")
	}
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(cut(ctx, maxContext))))
	return blocks
}

// actions holds the buttons that still make sense for the incident.
func actions(th thread) *slack.ActionBlock {
	var els []slack.BlockElement
	id := th.Incident.ID
	if th.open() {
		els = append(els, button(ActionAck, id, "Acknowledge", slack.StylePrimary))
	}
	if th.AwaitingApproval && th.open() {
		els = append(els, button(ActionApprove, id, "Approve", slack.StylePrimary),
			button(ActionDeny, id, "Deny", slack.StyleDanger))
	}
	if b := linkButton("remediator_alertmanager", "Alertmanager", th.Incident.ExternalURL); b != nil {
		els = append(els, b)
	}
	if b := linkButton("remediator_source", "Alert source", th.Incident.GeneratorURL); b != nil {
		els = append(els, b)
	}
	if len(els) == 0 {
		return nil
	}
	return slack.NewActionBlock("remediator_actions", els...)
}

func summary(inc notifier.Incident) string {
	candidates := []string{inc.Summary, inc.Annotations["summary"], inc.Annotations["description"]}
	for _, s := range candidates {
		if s != "" {
			return s
		}
	}
	return ""
}

// stepsText lists the steps, newest last; when the list is too long the
// oldest are dropped first.
func stepsText(steps []notifier.Step) string {
	lines := make([]string, len(steps))
	for i, s := range steps {
		lines[i] = cut(stepLine(s), 500)
	}
	for len(lines) > 1 && utf8.RuneCountInString(strings.Join(lines, "\n"))+20 > maxSectionText {
		lines = lines[1:]
	}
	text := "*Steps*\n" + strings.Join(lines, "\n")
	return cut(text, maxSectionText)
}

func stepLine(s notifier.Step) string {
	line := fmt.Sprintf("• `%s` (%s): *%s*", escape(s.Name), escape(s.Action), escape(s.Result))
	if s.Summary != "" {
		line += " " + escape(s.Summary)
	}
	if s.Error != "" {
		line += " (" + escape(s.Error) + ")"
	}
	return line
}

// reply renders a thread reply for one event.
func reply(ev notifier.Event, th thread) []slack.Block {
	blocks := []slack.Block{
		slack.NewSectionBlock(mrkdwn(cut(eventText(ev), maxSectionText)), nil, nil),
	}
	if ev.Kind == notifier.NeedsApproval && th.open() {
		blocks = append(blocks, slack.NewActionBlock("remediator_approval",
			button(ActionApprove, th.Incident.ID, "Approve", slack.StylePrimary),
			button(ActionDeny, th.Incident.ID, "Deny", slack.StyleDanger)))
	}
	return blocks
}

// eventText is the mrkdwn line of an event in the thread.
func eventText(ev notifier.Event) string {
	text := escape(ev.Text)
	switch ev.Kind {
	case notifier.StepDone:
		if ev.Step != nil {
			return stepLine(*ev.Step)
		}
	case notifier.Verified:
		return ":white_check_mark: *Verified* " + text
	case notifier.Failed:
		return ":red_circle: *Failed* " + text
	case notifier.NeedsApproval:
		return ":hourglass: *Approval needed* " + text
	case notifier.Acknowledged:
		return ":eyes: *Acknowledged* by " + escape(ev.By) + " " + text
	case notifier.Resolved:
		return ":large_green_circle: *Resolved* " + text
	case notifier.Escalate:
		return ":rotating_light: *Escalation* " + text
	}
	return text
}

// fallback is the plain text of a notification, shown where blocks are not.
func fallback(ev notifier.Event) string {
	s := fmt.Sprintf("[%s] %s %s", ev.Kind, ev.Incident.AlertName, ev.Incident.Target)
	if ev.Text != "" {
		s += ": " + ev.Text
	}
	return cut(escape(s), maxFallback)
}
