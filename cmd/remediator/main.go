// Command remediator receives Alertmanager webhooks and runs the matching
// playbooks against Kubernetes workloads.
//
//	remediator serve    --config remediator.yml
//	remediator check    --config remediator.yml
//	remediator simulate --config remediator.yml payload.json...
//	remediator replay   --url http://127.0.0.1:9095/webhook/alertmanager payload.json...
//	remediator version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/companion/remediator/remediator"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: remediator <command> [flags]

commands:
  serve     run the webhook server
  check     validate the configuration and playbooks
  simulate  show what would happen to captured Alertmanager payloads
  replay    post captured payloads to a running remediator
  version   print the version
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stderr)
	case "check":
		err = check(args, stdout, stderr)
	case "simulate":
		err = simulate(args, stdout, stderr)
	case "replay":
		err = replay(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, remediator.Version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "remediator %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("remediator "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func serve(args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	configPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	listen := fs.String("listen", "", "listen address (overrides the configuration)")
	dataDir := fs.String("data-dir", "", "data directory of the embedded store (overrides the configuration)")
	logLevel := fs.String("log.level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log.format", "logfmt", "log format: logfmt or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	app, err := remediator.New(ctx, remediator.Options{
		ConfigPath: *configPath,
		Listen:     *listen,
		DataDir:    *dataDir,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	defer app.Close()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// Reload logs its own failure and keeps the old playbooks.
				_ = app.Reload(ctx)
			}
		}
	}()
	return app.Run(ctx)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "logfmt":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log.format must be logfmt or json, got %q", format)
	}
}

func check(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	configPath := fs.String("config", "", "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, set, err := remediator.Check(*configPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "configuration OK: %d playbooks from %v, namespaces %v\n",
		set.Len(), cfg.PlaybookPatterns(), cfg.Namespaces)
	for _, pb := range set.All() {
		fmt.Fprintf(stdout, "  %s (%s:%d) handles %s, %d steps\n",
			pb.Name, pb.File, pb.Line, pb.Match.Alertname, len(pb.Steps))
	}
	return nil
}

func simulate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("simulate", stderr)
	configPath := fs.String("config", "", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("name at least one payload file")
	}
	return remediator.Simulate(context.Background(), stdout, *configPath, fs.Args(),
		remediator.SimulateOptions{JSON: *asJSON})
}

func replay(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	url := fs.String("url", "http://127.0.0.1:9095/webhook/alertmanager", "webhook URL of a running remediator")
	tokenFile := fs.String("bearer-token-file", "", "file holding the bearer token (or set "+remediator.EnvWebhookToken+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("name at least one payload file")
	}
	token := os.Getenv(remediator.EnvWebhookToken)
	if *tokenFile != "" {
		data, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("read bearer token: %w", err)
		}
		token = string(data)
	}
	return remediator.Replay(context.Background(), stdout, *url, token, fs.Args())
}
