package playbook

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Duration is a time span written as Prometheus writes them: 30s, 5m, 1h,
// 1d. A bad value is reported with its line, and decoding goes on so that
// every error in a file is found at once.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	md, err := model.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: %q is not a duration (use 30s, 5m, 1h or 1d)", n.Line, n.Value)}}
	}
	*d = Duration(md)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// String formats the duration as Prometheus does.
func (d Duration) String() string { return model.Duration(d).String() }
