// Package playbook defines the YAML playbook format (version 1), loads it
// strictly with every error reported at once by file and line, matches
// alerts to playbooks, and renders a playbook's target from alert labels.
package playbook

import (
	"text/template"
)

// Version is the only playbook format version this package reads.
const Version = 1

// Step actions. The first five are carried out by an executor; the last
// three by the engine itself.
const (
	ActionRestart        = "restart"
	ActionRollback       = "rollback"
	ActionScale          = "scale"
	ActionDeletePod      = "delete-pod"
	ActionWaitForRollout = "wait-for-rollout"
	ActionVerify         = "verify"
	ActionNotify         = "notify"
	ActionEscalate       = "escalate"
)

// What a step does when it fails.
const (
	// OnFailureAbort ends the run as failed and notifies. The default.
	OnFailureAbort = "abort"
	// OnFailureContinue goes on with the next step.
	OnFailureContinue = "continue"
	// OnFailureEscalate ends the run as failed and starts escalation now.
	OnFailureEscalate = "escalate"
)

// What a verify step does when it succeeds.
const (
	// OnSuccessStop ends the run as succeeded. The default.
	OnSuccessStop = "stop"
	// OnSuccessContinue goes on with the next step.
	OnSuccessContinue = "continue"
)

// Playbook is one file of the playbooks directory: which alerts it handles,
// which workload it acts on, the guards that limit it, and its steps.
type Playbook struct {
	Version     int    `yaml:"version"`
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Match       Match  `yaml:"match"`
	Target      Target `yaml:"target"`
	Guards      Guards `yaml:"guards"`
	// Escalation names the notifier's escalation chain; empty chooses by
	// severity.
	Escalation string `yaml:"escalation"`
	Steps      []Step `yaml:"steps"`

	// File and Line say where the playbook was read from.
	File string `yaml:"-"`
	Line int    `yaml:"-"`

	matchers []matcher
	target   targetTemplates
}

// Match selects alerts by name and Alertmanager label matchers.
type Match struct {
	// Alertname is the alertname label the playbook handles. Required: the
	// playbook set is indexed by it.
	Alertname string `yaml:"alertname"`
	// Matchers are further label matchers in Alertmanager's syntax:
	// `severity="critical"`, `namespace=~"shop|cart"`, `team!="db"`.
	Matchers []string `yaml:"matchers"`
}

// Target names the workload, as Go templates over the alert's labels and
// annotations: `{{ .Labels.namespace }}`.
type Target struct {
	// Kind is Deployment or StatefulSet. Leave it empty and set Pod to act
	// on the workload that owns the pod.
	Kind      string `yaml:"kind"`
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	Pod       string `yaml:"pod"`
}

// Guards limit how often and how a playbook acts.
type Guards struct {
	// Cooldown is the least time between two runs on one target.
	Cooldown Duration `yaml:"cooldown"`
	// MaxRuns is the most runs on one target within Window; 0 is no limit.
	MaxRuns int      `yaml:"max_runs"`
	Window  Duration `yaml:"window"`
	// DryRun sends every action with server-side dry run.
	DryRun bool `yaml:"dry_run"`
	// NeedsApproval holds the run until a human approves it.
	NeedsApproval bool `yaml:"needs_approval"`
}

// Step is one thing a run does. Fields that do not belong to Action are
// rejected when the playbook is loaded.
type Step struct {
	Name   string `yaml:"name"`
	Action string `yaml:"action"`
	// Timeout bounds the step; each action has a default.
	Timeout   Duration `yaml:"timeout"`
	OnFailure string   `yaml:"on_failure"`
	DryRun    bool     `yaml:"dry_run"`

	// scale
	Replicas    *int32 `yaml:"replicas"`
	Delta       *int32 `yaml:"delta"`
	Min         *int32 `yaml:"min"`
	Max         *int32 `yaml:"max"`
	AllowZero   bool   `yaml:"allow_zero"`
	RaiseHPAMin bool   `yaml:"raise_hpa_min"`

	// restart
	AllowPodDeletion bool `yaml:"allow_pod_deletion"`

	// delete-pod
	RestartThreshold *int32 `yaml:"restart_threshold"`
	MinReady         *int32 `yaml:"min_ready"`

	// verify: the alert resolves before Timeout, or, when Query is set,
	// the PromQL query's value goes to or under Below.
	Query     string   `yaml:"query"`
	Below     *float64 `yaml:"below"`
	OnSuccess string   `yaml:"on_success"`

	// notify and escalate: a Go template over the alert.
	Message string `yaml:"message"`

	// Line is where the step starts in its file.
	Line int `yaml:"-"`

	message *template.Template
}
