package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client-side rate limits used when Config leaves them at zero. client-go's
// own defaults (5 and 10) would make a burst of alerts queue in the client.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// ErrNoCluster is returned when neither an in-cluster service account nor a
// kubeconfig file is available: the remediator should run plan-only.
var ErrNoCluster = errors.New("no kubernetes cluster configured")

// Config says how the remediator reaches the Kubernetes API server.
//
// With Kubeconfig and Context both empty, the in-cluster service account is
// used when the remediator runs in a pod, and otherwise the kubeconfig that
// kubectl would use ($KUBECONFIG or ~/.kube/config) with its current context.
// Naming a Kubeconfig path or a Context selects that kubeconfig explicitly,
// even in a pod.
type Config struct {
	// Kubeconfig is the path of a kubeconfig file.
	Kubeconfig string `yaml:"kubeconfig"`
	// Context is the kubeconfig context to use instead of its current one.
	Context string `yaml:"context"`
	// QPS and Burst limit the requests the client sends; zero means
	// DefaultQPS and DefaultBurst.
	QPS   float32 `yaml:"qps"`
	Burst int     `yaml:"burst"`
}

// Validate reports settings that can never work.
func (c Config) Validate() error {
	var errs []error
	if c.QPS < 0 {
		errs = append(errs, fmt.Errorf("qps must not be negative, got %v", c.QPS))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst must not be negative, got %d", c.Burst))
	}
	return errors.Join(errs...)
}

// RESTConfig builds the client configuration that c describes. It wraps
// ErrNoCluster when there is nothing to connect to.
func (c Config) RESTConfig() (*rest.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	rc, err := c.load()
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = c.QPS, c.Burst
	if rc.QPS == 0 {
		rc.QPS = DefaultQPS
	}
	if rc.Burst == 0 {
		rc.Burst = DefaultBurst
	}
	rc.UserAgent = "companion-remediator"
	return rc, nil
}

func (c Config) load() (*rest.Config, error) {
	if c.Kubeconfig == "" && c.Context == "" {
		rc, err := rest.InClusterConfig()
		if err == nil {
			return rc, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("load in-cluster kubernetes config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	rc, err := loader.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, fmt.Errorf("load kubeconfig: %w: not in a pod, and no kubeconfig found", ErrNoCluster)
	}
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q (context %q): %w", c.Kubeconfig, c.Context, err)
	}
	return rc, nil
}

// probeTimeout bounds Probe when its context has no deadline.
const probeTimeout = 5 * time.Second

// Probe reports whether the cluster c describes can be reached and accepts
// the remediator's credentials, by asking the API server for its version. A
// nil error means the kubernetes executor can be used; otherwise serve
// should fall back to plan-only and say why (errors.Is(err, ErrNoCluster)
// tells "nothing configured" from "configured but unreachable").
func Probe(ctx context.Context, c Config) error {
	rc, err := c.RESTConfig()
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("probe kubernetes api %s: %w", rc.Host, err)
	}
	_, err = cs.Discovery().RESTClient().Get().AbsPath("/version").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("probe kubernetes api %s: %w", rc.Host, err)
	}
	return nil
}
