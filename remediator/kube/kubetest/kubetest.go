// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver through controller-runtime's envtest, and beside them
// kube-controller-manager with the controllers that turn Deployments and
// StatefulSets into ReplicaSets and pods. There is no kubelet and no
// scheduler, so pods stay Pending until a test marks them Running and Ready
// (RunKubelet) or crash-looping (CrashLoop) through the status subresource.
//
// The binaries come from KUBEBUILDER_ASSETS when it is set, and otherwise
// from the cache directory that tools/build.sh fills (make deps runs it).
// Everything listens on loopback ports picked at start; the processes are
// stopped by PID when the tests are done. kube-controller-manager dies with
// the test binary; etcd and kube-apiserver, which envtest starts in their
// own process group, outlive a test binary that is killed outright (as by
// go test's -timeout) and must then be ended by hand.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// The versions tools/build.sh builds; the cache directory is keyed by them.
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.7.3"
)

// Controllers are the kube-controller-manager controllers the tests run.
const Controllers = "deployment,replicaset,statefulset,serviceaccount,namespace,garbagecollector"

var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// AssetsDir returns the directory holding etcd, kube-apiserver and
// kube-controller-manager: KUBEBUILDER_ASSETS when set, otherwise the cache
// directory tools/build.sh writes to. It fails, saying how to build them,
// when one is missing.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("find the control plane binaries: %w", err)
		}
		dir = filepath.Join(cache, "companion-remediator",
			"kube-"+KubeVersion+"-etcd-"+EtcdVersion)
	}
	for _, name := range binaries {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("control plane binary %s missing from %s: run `make deps` "+
				"or `bash remediator/kube/kubetest/tools/build.sh` (a cold build takes about "+
				"10 minutes), or point KUBEBUILDER_ASSETS at a directory that has %v",
				name, dir, binaries)
		}
	}
	return dir, nil
}

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as an administrator (system:masters).
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface

	env     *envtest.Environment
	kcm     *exec.Cmd
	kcmOut  *syncBuffer
	kcmDone chan struct{}
	dir     string
}

// Start starts etcd, kube-apiserver and kube-controller-manager, and returns
// once the controller manager is at work.
func Start() (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	logf.SetLogger(logr.Discard())
	e := &Env{env: &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}}
	e.env.ControlPlane.Etcd = &envtest.Etcd{}
	// Tests need no durability; skipping fsync makes etcd several times faster.
	e.env.ControlPlane.Etcd.Configure().Set("unsafe-no-fsync", "true")
	apiserver := e.env.ControlPlane.GetAPIServer()
	// On loopback the endpoint reconciler would publish an unusable address.
	apiserver.Configure().Set("endpoint-reconciler-type", "none")

	cfg, err := e.env.Start()
	if err != nil {
		_ = e.env.Stop()
		return nil, fmt.Errorf("start etcd and kube-apiserver from %s: %w", assets, err)
	}
	e.Config = cfg
	if e.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		_ = e.env.Stop()
		return nil, fmt.Errorf("create admin client: %w", err)
	}
	if err := e.startControllerManager(assets); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// startControllerManager runs kube-controller-manager against the API
// server with the admin kubeconfig and waits until its service account
// controller has created the default namespace's service account, which
// shows it is connected and running its controllers.
func (e *Env) startControllerManager(assets string) error {
	dir, err := os.MkdirTemp("", "kubetest-kcm-")
	if err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	e.dir = dir
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, e.env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	e.kcmOut = &syncBuffer{}
	e.kcm = exec.Command(filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--controllers="+Controllers,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-statefulset-syncs=10",
		"--v=1",
	)
	e.kcm.Stdout, e.kcm.Stderr = e.kcmOut, e.kcmOut
	e.kcm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.kcm.Start(); err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	e.kcmDone = make(chan struct{})
	go func() {
		_ = e.kcm.Wait()
		close(e.kcmDone)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		_, err := e.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default",
			metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-e.kcmDone:
			return fmt.Errorf("kube-controller-manager exited:\n%s", e.kcmOut.String())
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager did not start its controllers "+
				"within a minute (last error: %v):\n%s", err, e.kcmOut.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// KubeConfig returns a kubeconfig file's content for the administrator.
func (e *Env) KubeConfig() []byte { return e.env.KubeConfig }

// ControllerManagerOutput returns what kube-controller-manager printed.
func (e *Env) ControllerManagerOutput() string {
	if e.kcmOut == nil {
		return ""
	}
	return e.kcmOut.String()
}

// Stop ends kube-controller-manager by its PID (SIGTERM, SIGKILL after five
// seconds), then kube-apiserver and etcd, and removes their files.
func (e *Env) Stop() error {
	if e.kcm != nil && e.kcm.Process != nil {
		_ = e.kcm.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.kcmDone:
		case <-time.After(5 * time.Second):
			_ = e.kcm.Process.Kill()
			<-e.kcmDone
		}
	}
	err := e.env.Stop()
	if e.dir != "" {
		err = errors.Join(err, os.RemoveAll(e.dir))
	}
	return err
}

// AddUser provisions a user the API server authenticates by client
// certificate, with the given name and groups, and returns a client
// configuration for it. What it may do is up to RBAC.
func (e *Env) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{
		QPS: 1000, Burst: 2000,
	})
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", name, err)
	}
	return u.Config(), nil
}

var shared struct {
	once sync.Once
	env  *Env
	err  error
}

// Shared returns the control plane shared by the tests of one package,
// starting it on first use; Main stops it. It fails t when the control
// plane cannot start, with the reason (for missing binaries, how to build
// them).
func Shared(t testing.TB) *Env {
	t.Helper()
	shared.once.Do(func() {
		start := time.Now()
		shared.env, shared.err = Start()
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "kubetest: control plane up in %s\n",
				time.Since(start).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatalf("kubetest: %v", shared.err)
	}
	return shared.env
}

// Main runs the package's tests and stops the shared control plane, if one
// was started, before returning the exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.env != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stop control plane: %v\n", err)
		}
	}
	return code
}

// Namespace creates a namespace for t, named after it with a random suffix,
// and deletes it when t ends.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: slug(t.Name()) + "-"}}
	ns, err := e.Client.CoreV1().Namespaces().Create(context.Background(), ns,
		metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		err := e.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name,
			metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// slug turns a test name into the start of a namespace name: lowercase
// letters, digits and dashes, at most 40 characters.
func slug(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
		if b.Len() >= 40 {
			break
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		return "t"
	}
	return s
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
