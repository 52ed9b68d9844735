package kube

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/kube/kubetest"
)

// writeKubeconfig writes the control plane's admin kubeconfig with a second
// context, "nowhere", whose server listens on nothing.
func writeKubeconfig(t *testing.T, env *kubetest.Env) (path, host string) {
	t.Helper()
	cfg, err := clientcmd.Load(env.KubeConfig())
	require.NoError(t, err)
	current := cfg.Contexts[cfg.CurrentContext]
	host = cfg.Clusters[current.Cluster].Server
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.Contexts["nowhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: current.AuthInfo}
	path = filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path, host
}

// noCluster makes sure neither in-cluster settings nor a default
// kubeconfig can be found.
func noCluster(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", filepath.Join(home, "missing"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

func TestConfig(t *testing.T) {
	env := kubetest.Shared(t)
	path, host := writeKubeconfig(t, env)
	noCluster(t)

	cases := []struct {
		name      string
		cfg       Config
		host      string
		qps       float32
		burst     int
		err       string
		noCluster bool
		reachable bool
	}{
		{
			name: "kubeconfig path, current context, default limits",
			cfg:  Config{Kubeconfig: path},
			host: host, qps: DefaultQPS, burst: DefaultBurst, reachable: true,
		},
		{
			name: "limits set",
			cfg:  Config{Kubeconfig: path, QPS: 7, Burst: 9},
			host: host, qps: 7, burst: 9, reachable: true,
		},
		{
			name: "context selected",
			cfg:  Config{Kubeconfig: path, Context: "nowhere"},
			host: "https://127.0.0.1:1", qps: DefaultQPS, burst: DefaultBurst,
		},
		{
			name: "unknown context",
			cfg:  Config{Kubeconfig: path, Context: "staging"},
			err:  `context "staging"`,
		},
		{
			name: "missing kubeconfig file",
			cfg:  Config{Kubeconfig: filepath.Join(t.TempDir(), "absent")},
			err:  "load kubeconfig",
		},
		{
			name: "nothing configured", cfg: Config{},
			err: "no kubernetes cluster configured", noCluster: true,
		},
		{name: "negative qps", cfg: Config{QPS: -1}, err: "qps must not be negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := tc.cfg.RESTConfig()
			probe := Probe(context.Background(), tc.cfg)
			if tc.err != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.err)
				require.Equal(t, tc.noCluster, errors.Is(err, ErrNoCluster))
				require.Error(t, probe)
				require.Equal(t, tc.noCluster, errors.Is(probe, ErrNoCluster))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.host, rc.Host)
			require.Equal(t, tc.qps, rc.QPS)
			require.Equal(t, tc.burst, rc.Burst)
			if tc.reachable {
				require.NoError(t, probe)
			} else {
				require.Error(t, probe)
				require.False(t, errors.Is(probe, ErrNoCluster))
			}
		})
	}
}

func TestConfigDecodesYAML(t *testing.T) {
	var cfg Config
	doc := "kubeconfig: /etc/remediator/kubeconfig\ncontext: prod\nqps: 20\nburst: 40\n"
	require.NoError(t, yaml.Unmarshal([]byte(doc), &cfg))
	require.Equal(t, Config{Kubeconfig: "/etc/remediator/kubeconfig", Context: "prod",
		QPS: 20, Burst: 40}, cfg)
}

func TestNewActsThroughKubeconfig(t *testing.T) {
	f := newFixture(t)
	path, _ := writeKubeconfig(t, f.env)
	f.deployment("web", "web:1", 1)
	exec, err := New(Config{Kubeconfig: path}, testLogger(t), nil)
	require.NoError(t, err)
	require.Equal(t, "kubernetes", exec.Name())
	res, err := exec.Execute(f.ctx(), action.Request{Action: action.Restart,
		Target: f.target("deployment", "web")})
	require.NoError(t, err)
	require.True(t, res.Changed)
}
