// Command toktra-agent is the Toktra agent: it enrolls the device, keeps
// its stream to the control plane, and enforces locks with the OS firewall.
//
//	toktra-agent enroll --server HOST:PORT --secret S --ca-pin sha256:... --email E
//	toktra-agent run                  in the foreground, or as the OS service
//	toktra-agent status [--json]
//	toktra-agent install | uninstall | start | stop   the OS service
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kardianos/service"

	"github.com/toktra/toktra/agent"
	"github.com/toktra/toktra/agent/telemetry"
	"github.com/toktra/toktra/internal/logging"
	"github.com/toktra/toktra/platform"
	agentv1 "github.com/toktra/toktra/proto/toktra/agent/v1"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "toktra-agent:", err)
		os.Exit(1)
	}
}

const usage = `usage: toktra-agent <command> [flags]

commands:
  enroll     enroll this device (the MDM runs this with the server, secret, CA pin and email)
  run        run the agent in the foreground (or as the OS service)
  status     what the agent is doing: enrolled to what, connected, locked, enforced how
  install    install the OS service (it runs "run" with the same --state-dir)
  uninstall  remove the OS service
  start      start the OS service
  stop       stop the OS service
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", defaultStateDir, "the agent's state directory (identity, keys, lock state)")
	logFormat := fs.String("log-format", "auto", "log format: json, text or auto")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	var enroll agent.EnrollOptions
	var serial string
	asJSON := false
	usage := usageConfig{enabled: true, maxBytes: telemetry.DefaultMaxBytes, interval: telemetry.DefaultBatchInterval}
	switch cmd {
	case "enroll":
		fs.StringVar(&enroll.Server, "server", "", "control plane agent address, host:port")
		fs.StringVar(&enroll.Secret, "secret", os.Getenv("TOKTRA_ENROLLMENT_SECRET"), "enrollment secret (or TOKTRA_ENROLLMENT_SECRET)")
		fs.StringVar(&enroll.CAPin, "ca-pin", "", "control plane CA pin, sha256:<hex>")
		fs.StringVar(&enroll.UserEmail, "email", "", "email of the device's user")
		fs.StringVar(&serial, "serial", "", "device serial number, if the MDM knows it better than the agent")
	case "status":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	case "run", "install":
		fs.BoolVar(&usage.enabled, "usage-telemetry", true, "record connections to LLM destinations and report them to the control plane")
		fs.Int64Var(&usage.maxBytes, "usage-buffer-bytes", telemetry.DefaultMaxBytes, "bound of the on-disk buffer of usage events kept while offline (oldest dropped beyond it)")
		fs.DurationVar(&usage.interval, "usage-batch-interval", telemetry.DefaultBatchInterval, "how often buffered usage events are sealed into a batch for sending")
	case "uninstall", "start", "stop":
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	dir := agent.StateDir(*stateDir)
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}

	switch cmd {
	case "enroll":
		enroll.StateDir = dir
		enroll.Version = version
		enroll.Now = time.Now
		facts := agent.DetectFacts(version)
		if serial != "" {
			facts.Serial = serial
		}
		enroll.Facts = facts
		id, err := agent.Enroll(context.Background(), enroll)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enrolled: device %s in org %s at %s\n", id.DeviceID, id.OrgID, id.Server)
		return nil
	case "status":
		rep, err := agent.ReadReport(dir)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		return rep.WriteText(stdout)
	}

	if usage.maxBytes < telemetry.MinMaxBytes {
		return fmt.Errorf("--usage-buffer-bytes: at least %d", telemetry.MinMaxBytes)
	}
	if usage.interval < time.Second {
		return errors.New("--usage-batch-interval: at least 1s")
	}
	prog := &program{stateDir: dir, log: log, usage: usage}
	svc, err := service.New(prog, &service.Config{
		Name:        "toktra-agent",
		DisplayName: "Toktra agent",
		Description: "Enforces Toktra lockouts: blocks LLM services on this device when its user is offboarded.",
		Arguments: []string{"run", "--state-dir", *stateDir, "--log-format", "json",
			"--usage-telemetry=" + strconv.FormatBool(usage.enabled),
			"--usage-buffer-bytes", strconv.FormatInt(usage.maxBytes, 10),
			"--usage-batch-interval", usage.interval.String()},
		Option: service.KeyValue{"Restart": "always", "RestartSec": 1},
	})
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if cmd != "run" {
		if err := service.Control(svc, cmd); err != nil {
			return fmt.Errorf("%s the service: %w", cmd, err)
		}
		fmt.Fprintf(stdout, "service %s: done\n", cmd)
		return nil
	}
	if service.Interactive() {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return prog.runAgent(ctx)
	}
	return svc.Run()
}

// usageConfig is how the agent records usage telemetry.
type usageConfig struct {
	enabled  bool
	maxBytes int64
	interval time.Duration
}

// program adapts the agent to the OS service manager.
type program struct {
	stateDir agent.StateDir
	log      *slog.Logger
	usage    usageConfig
	cancel   context.CancelFunc
	done     chan error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan error, 1)
	go func() { p.done <- p.runAgent(ctx) }()
	return nil
}

func (p *program) Stop(service.Service) error {
	p.cancel()
	select {
	case err := <-p.done:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("agent did not stop within 10s")
	}
}

func (p *program) runAgent(ctx context.Context) error {
	plat, err := newPlatform(p.log)
	if err != nil {
		return err
	}
	defer plat.enforcer.Close()
	opts := agent.Options{
		StateDir:     p.stateDir,
		Enforcer:     plat.enforcer,
		Resolver:     plat.resolver,
		Watch:        plat.watch,
		Capabilities: plat.caps,
		Version:      version,
		Logger:       p.log,
	}
	var usage *usageTelemetry
	if p.usage.enabled {
		usage, err = p.startUsage(plat)
		if err != nil {
			return err
		}
		defer usage.close()
		if usage.monitor != nil {
			opts.Usage = usage.buffer
		}
	} else {
		plat.caps.Unsupported["usage-telemetry"] = "turned off (--usage-telemetry=false)"
	}
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	p.log.Info("agent starting", "version", version, "state_dir", string(p.stateDir), "enforcers", plat.caps.GetEnforcers())
	if usage != nil {
		usage.agent.Store(a)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := usage.run(ctx)
		defer func() { cancel(); <-done }()
	}
	return a.Run(ctx)
}

// usageTelemetry is the agent's usage recording: the OS's flow monitor
// feeding a recorder, batched into the buffer that the agent sends.
type usageTelemetry struct {
	log      *slog.Logger
	buffer   *telemetry.Buffer
	dests    *telemetry.Destinations
	recorder *telemetry.Recorder
	monitor  *platform.FlowMonitor // nil where the OS cannot record flows
	agent    atomic.Pointer[agent.Agent]
}

// startUsage opens the buffer and the flow monitor. Where the OS cannot
// record flows the agent still runs and tells the control plane why.
func (p *program) startUsage(plat osPlatform) (*usageTelemetry, error) {
	u := &usageTelemetry{log: p.log}
	var err error
	u.buffer, err = telemetry.OpenBuffer(telemetry.BufferOptions{
		Dir: filepath.Join(string(p.stateDir), "usage"), MaxBytes: p.usage.maxBytes, Logger: p.log,
	})
	if err != nil {
		return nil, err
	}
	u.dests = telemetry.NewDestinations(plat.resolver, func() ([]string, []netip.Prefix) {
		if a := u.agent.Load(); a != nil {
			return a.PolicyDestinations()
		}
		return nil, nil
	}, nil, p.log)
	u.recorder = telemetry.NewRecorder(telemetry.RecorderOptions{
		Buffer: u.buffer, Destinations: u.dests, Logger: p.log, BatchInterval: p.usage.interval,
	})
	u.monitor, err = platform.NewFlowMonitor(platform.FlowMonitorOptions{Logger: p.log, Track: u.dests.Contains})
	if err != nil {
		p.log.Warn("usage telemetry unavailable", "err", err)
		plat.caps.Unsupported["usage-telemetry"] = err.Error()
		u.monitor = nil
	}
	return u, nil
}

// run starts the recording goroutines; the channel closes once they have
// stopped after ctx ends (the recorder seals what it holds on the way out).
func (u *usageTelemetry) run(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if u.monitor == nil {
		close(done)
		return done
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); u.dests.Run(ctx) }()
	go func() { defer wg.Done(); u.recorder.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := u.monitor.Run(ctx, u.recorder.Record); err != nil {
			u.log.Error("usage telemetry stopped", "err", err)
		}
	}()
	go func() { wg.Wait(); close(done) }()
	return done
}

func (u *usageTelemetry) close() {
	if u.monitor != nil {
		u.monitor.Close()
	}
	u.buffer.Close()
}

// osPlatform is what this OS can enforce with.
type osPlatform struct {
	enforcer platform.Enforcer
	resolver agent.Resolver
	watch    func(ctx context.Context, onChange func())
	caps     *agentv1.Capabilities
}
