package kube

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
)

func TestForbiddenIsTerminalAndNamesWhatIsMissing(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	readOnly := []rbacv1.PolicyRule{
		{
			APIGroups: []string{"apps"},
			Resources: []string{"deployments", "deployments/scale", "replicasets", "statefulsets"},
			Verbs:     []string{"get", "list", "watch"},
		},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{
			APIGroups: []string{"autoscaling"},
			Resources: []string{"horizontalpodautoscalers"},
			Verbs:     []string{"get", "list"},
		},
	}
	var log requestLog
	rc := log.wrap(f.env.RestrictedUser(t, f.ns, "remediator-readonly", readOnly))
	f.exec = f.executor(rc)

	cases := []struct {
		name    string
		req     action.Request
		method  string
		path    string
		message string
	}{
		{
			name:   "restart needs patch",
			req:    action.Request{Action: action.Restart, Target: f.target("deployment", "web")},
			method: http.MethodPatch,
			path:   "/deployments/web",
			message: "forbidden: RBAC does not allow the remediator to " +
				"patch deployments.apps in namespace " + f.ns,
		},
		{
			name: "scale needs update on the scale subresource",
			req: action.Request{Action: action.Scale, Target: f.target("deployment", "web"),
				Params: action.Params{Replicas: ptr.To[int32](3)}},
			method: http.MethodPut,
			path:   "/deployments/web/scale",
			message: "forbidden: RBAC does not allow the remediator to " +
				"update deployments.apps/scale in namespace " + f.ns,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.do(tc.req)
			require.Error(t, err)
			require.True(t, action.IsTerminal(err))
			require.Contains(t, err.Error(), tc.message)
			require.Contains(t, err.Error(), `User "remediator-readonly" cannot`)
			require.Equal(t, 1, log.count(tc.method, tc.path), "a 403 is never retried")
		})
	}
	require.Equal(t, int32(1), f.replicas("web"))
}

func TestConflictIsRetriedKeepingTheOtherWrite(t *testing.T) {
	cases := []struct {
		name   string
		req    action.Request
		method string
		path   string
		// other is the concurrent writer's change, made between the
		// executor's read and its write.
		other func(f *fixture)
		check func(f *fixture)
	}{
		{
			name:   "restart",
			req:    action.Request{Action: action.Restart},
			method: http.MethodPatch, path: "/deployments/web",
			other: func(f *fixture) { f.scaleTo("web", 3) },
			check: func(f *fixture) {
				d := f.getDeployment("web")
				require.Equal(f.t, int32(3), *d.Spec.Replicas, "the other writer's change stays")
				require.Contains(f.t, d.Spec.Template.Annotations, RestartedAtAnnotation)
			},
		},
		{
			name:   "relative scale",
			req:    action.Request{Action: action.Scale, Params: action.Params{Delta: ptr.To[int32](1)}},
			method: http.MethodPut, path: "/deployments/web/scale",
			other: func(f *fixture) { f.scaleTo("web", 5) },
			check: func(f *fixture) {
				require.Equal(f.t, int32(6), f.replicas("web"), "+1 on top of the other writer's 5")
			},
		},
		{
			name:   "rollback",
			req:    action.Request{Action: action.Rollback},
			method: http.MethodPut, path: "/deployments/web",
			other: func(f *fixture) { f.label("web", "team", "shop") },
			check: func(f *fixture) {
				d := f.getDeployment("web")
				require.Equal(f.t, "shop", d.Labels["team"], "the other writer's change stays")
				require.Equal(f.t, "web:1", d.Spec.Template.Spec.Containers[0].Image)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.deployment("web", "web:1", 1)
			f.setImage("web", "web:2")
			log := requestLog{before: func(r *http.Request, n int) *http.Response {
				if r.Method == tc.method && strings.HasSuffix(r.URL.Path, tc.path) && n == 1 {
					tc.other(f)
				}
				return nil
			}}
			f.exec = f.executor(log.wrap(f.env.Config))
			tc.req.Target = f.target("deployment", "web")

			res, err := f.do(tc.req)
			require.NoError(t, err)
			require.True(t, res.Changed)
			// The other writer conflicts once; controllers writing status
			// may add a conflict of their own.
			writes := log.count(tc.method, tc.path)
			require.GreaterOrEqual(t, writes, 2, "the first write conflicted and was retried")
			require.LessOrEqual(t, writes, 1+maxConflicts)
			tc.check(f)
		})
	}
}

func TestConflictRetriesAreBounded(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	log := requestLog{before: func(r *http.Request, n int) *http.Response {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/scale") {
			f.label("web", "writes", time.Now().Format("150405.000000"))
		}
		return nil
	}}
	f.exec = f.executor(log.wrap(f.env.Config))
	_, err := f.do(action.Request{Action: action.Scale, Target: f.target("deployment", "web"),
		Params: action.Params{Replicas: ptr.To[int32](2)}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "still conflicting after 5 retries")
	require.False(t, action.IsTerminal(err))
	require.Equal(t, 1+maxConflicts, log.count(http.MethodPut, "/deployments/web/scale"))
	require.Equal(t, int32(1), f.replicas("web"))
}

func TestTransientFailuresAreRetriedWithinTheDeadline(t *testing.T) {
	cases := []struct {
		name     string
		failures int
		timeout  time.Duration
		err      string
	}{
		{name: "two 503s then success", failures: 2, timeout: 10 * time.Second},
		{name: "down until the deadline", failures: 1000, timeout: time.Second, err: "gave up after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.deployment("web", "web:1", 1)
			log := requestLog{before: func(r *http.Request, n int) *http.Response {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/deployments/web") &&
					n <= tc.failures {
					return unavailable(r)
				}
				return nil
			}}
			f.exec = f.executor(log.wrap(f.env.Config))
			start := time.Now()
			res, err := f.do(action.Request{Action: action.Restart,
				Target: f.target("deployment", "web"), Params: action.Params{Timeout: tc.timeout}})
			require.Less(t, time.Since(start), tc.timeout+time.Second)
			if tc.err != "" {
				require.Error(t, err)
				require.False(t, action.IsTerminal(err))
				require.Contains(t, err.Error(), tc.err)
				require.NotContains(t, f.getDeployment("web").Spec.Template.Annotations,
					RestartedAtAnnotation)
				return
			}
			require.NoError(t, err)
			require.True(t, res.Changed)
			require.Equal(t, tc.failures+1, log.count(http.MethodGet, "/deployments/web"))
		})
	}
}

// unavailable is the answer of an API server that cannot serve right now.
func unavailable(r *http.Request) *http.Response {
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure",` +
		`"message":"injected: etcd is unavailable","reason":"ServiceUnavailable","code":503}`
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable,
		Status:     "503 Service Unavailable",
		Header:     http.Header{"Content-Type": []string{"application/json"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    r,
		ProtoMajor: 1, ProtoMinor: 1,
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 2)
	f.setImage("web", "web:2")
	pod := f.podNames("web")[0]
	require.NoError(t, f.env.CrashLoop(f.ctx(), f.ns, pod, 5))
	before := f.getDeployment("web")

	cases := []struct {
		name string
		req  action.Request
	}{
		{name: "restart", req: action.Request{Action: action.Restart}},
		{name: "rollback", req: action.Request{Action: action.Rollback}},
		{name: "scale", req: action.Request{Action: action.Scale,
			Params: action.Params{Replicas: ptr.To[int32](4)}}},
		{name: "delete-pod", req: action.Request{Action: action.DeletePod}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Target = f.target("deployment", "web")
			tc.req.DryRun = true
			res, err := f.do(tc.req)
			require.NoError(t, err)
			require.True(t, res.DryRun)
			require.True(t, res.Changed, "reports what would change")

			after := f.getDeployment("web")
			require.Equal(t, before.Generation, after.Generation)
			require.Equal(t, before.Spec, after.Spec)
			require.Contains(t, f.podNames("web"), pod)
			h, err := f.exec.revs.load(f.ctx(), f.ns, "web")
			require.NoError(t, err)
			require.Empty(t, h.Bad, "a dry-run rollback records nothing")
		})
	}

	t.Run("admission still judges the request", func(t *testing.T) {
		f.denyReplicasOver(5)
		req := action.Request{Action: action.Scale, Target: f.target("deployment", "web"),
			DryRun: true, Params: action.Params{Replicas: ptr.To[int32](8)}}
		var err error
		require.Eventually(t, func() bool {
			_, err = f.do(req)
			return err != nil
		}, waitLong, 100*time.Millisecond, "the admission policy never applied")
		require.True(t, action.IsTerminal(err))
		require.Contains(t, err.Error(), "at most 5 replicas")
		require.Equal(t, int32(2), f.replicas("web"))
	})
}

// denyReplicasOver installs a ValidatingAdmissionPolicy that refuses more
// than n replicas for Deployments in the fixture's namespace.
func (f *fixture) denyReplicasOver(n int) {
	f.t.Helper()
	name := "max-replicas-" + f.ns
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{
				ResourceRules: []admissionv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionv1.RuleWithOperations{
						Operations: []admissionv1.OperationType{admissionv1.Update},
						Rule: admissionv1.Rule{
							APIGroups:   []string{"apps"},
							APIVersions: []string{"v1"},
							Resources:   []string{"deployments", "deployments/scale"},
						},
					},
				}},
			},
			Validations: []admissionv1.Validation{{
				Expression: "object.spec.replicas <= " + strconv.Itoa(n),
				Message:    "at most " + strconv.Itoa(n) + " replicas",
			}},
		},
	}
	admission := f.env.Client.AdmissionregistrationV1()
	_, err := admission.ValidatingAdmissionPolicies().Create(f.ctx(), policy, metav1.CreateOptions{})
	require.NoError(f.t, err)
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": f.ns},
			}},
		},
	}
	_, err = admission.ValidatingAdmissionPolicyBindings().Create(f.ctx(), binding,
		metav1.CreateOptions{})
	require.NoError(f.t, err)
	f.t.Cleanup(func() {
		ctx := context.Background()
		_ = admission.ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})
		_ = admission.ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{})
	})
}

func (f *fixture) scaleTo(name string, replicas int32) {
	f.t.Helper()
	d := f.getDeployment(name)
	d.Spec.Replicas = &replicas
	_, err := f.env.Client.AppsV1().Deployments(f.ns).Update(f.ctx(), d, metav1.UpdateOptions{})
	require.NoError(f.t, err)
}

func (f *fixture) label(name, key, value string) {
	f.t.Helper()
	d := f.getDeployment(name)
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	d.Labels[key] = value
	_, err := f.env.Client.AppsV1().Deployments(f.ns).Update(f.ctx(), d, metav1.UpdateOptions{})
	require.NoError(f.t, err)
}
