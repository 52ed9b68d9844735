// Package rules holds the Prometheus alerting rules for companion-api and
// for the remediator itself (*.rules.yml), with their promtool unit tests
// in tests/. The Go code here is only the test that runs promtool on them
// and checks the label contract the shipped playbooks rely on.
package rules
