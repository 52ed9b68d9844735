package kube

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/kube/kubetest"
)

// Every test in this package shares one control plane; each works in its
// own namespace.
func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// How long tests wait for controllers, and how often they look.
const (
	waitLong = 30 * time.Second
	waitTick = 50 * time.Millisecond
)

// fixture is one test's namespace on the shared control plane, with an
// executor acting as the administrator.
type fixture struct {
	t    *testing.T
	env  *kubetest.Env
	ns   string
	exec *Executor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := kubetest.Shared(t)
	f := &fixture{t: t, env: env, ns: env.Namespace(t)}
	env.RunKubelet(t, f.ns)
	f.exec = f.executor(env.Config)
	return f
}

// executor returns an executor for rc whose logs go to the test log.
func (f *fixture) executor(rc *rest.Config) *Executor {
	f.t.Helper()
	e, err := NewForRESTConfig(rc, testLogger(f.t), nil)
	require.NoError(f.t, err)
	e.pollEvery = 50 * time.Millisecond
	return e
}

func (f *fixture) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *fixture) target(kind, name string) action.Target {
	return action.Target{Kind: kind, Namespace: f.ns, Name: name}
}

func (f *fixture) do(req action.Request) (action.Result, error) {
	f.t.Helper()
	if req.Target.Namespace == "" {
		req.Target.Namespace = f.ns
	}
	if req.Params.Timeout == 0 {
		req.Params.Timeout = 30 * time.Second
	}
	return f.exec.Execute(f.ctx(), req)
}

// deployment creates a Deployment running image with replicas pods and
// waits until it has rolled out; change adjusts it before creation.
func (f *fixture) deployment(
	name, image string,
	replicas int32,
	change ...func(*appsv1.Deployment),
) *appsv1.Deployment {
	f.t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels, image),
		},
	}
	for _, c := range change {
		c(d)
	}
	d, err := f.env.Client.AppsV1().Deployments(f.ns).Create(f.ctx(), d, metav1.CreateOptions{})
	require.NoError(f.t, err)
	if !d.Spec.Paused && d.Spec.Template.Labels[kubetest.NotReadyLabel] == "" {
		f.waitRolledOut(name)
	}
	return d
}

func podTemplate(labels map[string]string, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}},
			// No kubelet runs; pods must go away at once when deleted.
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

// setImage changes a Deployment's image, as a deploy would, and waits for
// the rollout.
func (f *fixture) setImage(name, image string) {
	f.t.Helper()
	d := f.getDeployment(name)
	d.Spec.Template.Spec.Containers[0].Image = image
	_, err := f.env.Client.AppsV1().Deployments(f.ns).Update(f.ctx(), d, metav1.UpdateOptions{})
	require.NoError(f.t, err)
	f.waitRolledOut(name)
}

func (f *fixture) getDeployment(name string) *appsv1.Deployment {
	f.t.Helper()
	d, err := f.env.Client.AppsV1().Deployments(f.ns).Get(f.ctx(), name, metav1.GetOptions{})
	require.NoError(f.t, err)
	return d
}

// waitRolledOut waits until the Deployment controller reports every replica
// of the latest generation updated and available.
func (f *fixture) waitRolledOut(name string) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		d := f.getDeployment(name)
		_, done, err := deploymentStatus(d)
		return err == nil && done
	}, waitLong, waitTick, "deployment %s never rolled out", name)
}

// replicaSets returns the ReplicaSets the Deployment owns, newest first.
func (f *fixture) replicaSets(name string) []appsv1.ReplicaSet {
	f.t.Helper()
	owned, err := f.exec.ownedReplicaSets(f.ctx(), f.getDeployment(name))
	require.NoError(f.t, err)
	return owned
}

func (f *fixture) pods(selector string) []corev1.Pod {
	f.t.Helper()
	list, err := f.env.Client.CoreV1().Pods(f.ns).List(f.ctx(),
		metav1.ListOptions{LabelSelector: selector})
	require.NoError(f.t, err)
	return list.Items
}

// requestLog wraps a client configuration's transport: it counts requests
// by method and path, and lets a test act before a request is sent or
// answer it without the API server.
type requestLog struct {
	mu     sync.Mutex
	counts map[string]int
	// before runs before each request is sent; a non-nil response is
	// returned instead of sending it.
	before func(r *http.Request, n int) *http.Response
}

func (l *requestLog) wrap(rc *rest.Config) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			key := r.Method + " " + r.URL.Path
			l.mu.Lock()
			if l.counts == nil {
				l.counts = map[string]int{}
			}
			l.counts[key]++
			n := l.counts[key]
			before := l.before
			l.mu.Unlock()
			if before != nil {
				if resp := before(r, n); resp != nil {
					return resp, nil
				}
			}
			return rt.RoundTrip(r)
		})
	}
	return rc
}

func (l *requestLog) count(method, pathSuffix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for key, c := range l.counts {
		if strings.HasPrefix(key, method+" ") && strings.HasSuffix(key, pathSuffix) {
			n += c
		}
	}
	return n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// testLogger writes the executor's logs, debug included, to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
