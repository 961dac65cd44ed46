package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// openLogs parses args as the logging flags and opens the logs on two
// buffers.
func openLogs(t *testing.T, args ...string) (*logs, *bytes.Buffer, *bytes.Buffer, error) {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	lf := addLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	var stdout, stderr bytes.Buffer
	l, err := lf.open(&stdout, &stderr)
	if err == nil {
		t.Cleanup(l.close)
	}
	return l, &stdout, &stderr, err
}

// emit logs one line per level in each scope.
func emit(l *logs, scopes ...string) {
	for _, s := range scopes {
		lg := l.scope(s)
		lg.Debug("d")
		lg.Info("i")
		lg.Warn("w")
		lg.Error("e")
	}
}

// jsonLines parses every line as one JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line is not one JSON object: %v\n%q", err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// seen lists "scope/level" of every JSON record.
func seen(t *testing.T, out string) string {
	var got []string
	for _, r := range jsonLines(t, out) {
		got = append(got, r["scope"].(string)+"/"+r["level"].(string))
	}
	return strings.Join(got, " ")
}

func TestLogOutputLevel(t *testing.T) {
	for _, c := range []struct {
		spec string
		want string // scope/level printed, for scopes default and iptables
	}{
		{"default:info", "default/info default/warn default/error iptables/info iptables/warn iptables/error"},
		{"", "default/info default/warn default/error iptables/info iptables/warn iptables/error"},
		{"default:warn,iptables:debug", "default/warn default/error iptables/debug iptables/info iptables/warn iptables/error"},
		{"debug", "default/debug default/info default/warn default/error iptables/info iptables/warn iptables/error"},
		{"default:none", "iptables/info iptables/warn iptables/error"},
		{"default:fatal,iptables:error", "iptables/error"},
		{"all:error", "default/error iptables/error"},
		{"iptables:debug,all:warn", "default/warn default/error iptables/warn iptables/error"},
		{"all:warn,default:debug", "default/debug default/info default/warn default/error iptables/warn iptables/error"},
		{"cni:debug,someone-else:none", "default/info default/warn default/error iptables/info iptables/warn iptables/error"},
	} {
		l, _, stderr, err := openLogs(t, "--log_as_json", "--log_output_level="+c.spec)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		emit(l, "default", "iptables")
		if got := seen(t, stderr.String()); got != c.want {
			t.Errorf("--log_output_level=%q:\n got  %s\n want %s", c.spec, got, c.want)
		}
	}
}

// A malformed spec is bad input: an error naming the flag and the value,
// exit 2 (errUsage) before anything is done.
func TestLogLevelSpecRefused(t *testing.T) {
	for _, spec := range []string{"default:loud", "default:info,", "default:info:x", ":info", "INFO", "default=info", ","} {
		for _, flag := range []string{"log_output_level", "log_stacktrace_level"} {
			_, _, _, err := openLogs(t, "--"+flag, spec)
			if err == nil || !strings.Contains(err.Error(), "--"+flag) || !strings.Contains(err.Error(), spec) {
				t.Errorf("--%s %q: got %v, want an error naming the flag and the value", flag, spec, err)
			}
		}
		var stdout, stderr bytes.Buffer
		err := run([]string{"istio-iptables", "--log_output_level=" + spec, "-b", "*"}, nil, &stdout, &stderr, noEnv)
		var u errUsage
		if !errors.As(err, &u) {
			t.Errorf("run with --log_output_level=%q: %v, want a usage error (exit 2)", spec, err)
		}
	}
}

// Every line is one JSON object with time, level, scope, msg and the
// fields; durations are spelled out; --log_caller adds file:line for the
// scopes it names.
func TestLogAsJSON(t *testing.T) {
	l, stdout, stderr, err := openLogs(t, "--log_as_json", "--log_caller", "iptables")
	if err != nil {
		t.Fatal(err)
	}
	l.scope("default").Info("applied", "netns", "/var/run/netns/p", "rules", 3, "duration", 1500*time.Microsecond)
	l.scope("iptables").Warn("multi\nline")
	if stdout.Len() != 0 {
		t.Errorf("logs on stdout by default: %q", stdout)
	}
	recs := jsonLines(t, stderr.String())
	if len(recs) != 2 {
		t.Fatalf("want 2 lines, got %q", stderr)
	}
	r := recs[0]
	if _, err := time.Parse(time.RFC3339Nano, r["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	for k, want := range map[string]any{"level": "info", "scope": "default", "msg": "applied", "netns": "/var/run/netns/p", "rules": 3.0, "duration": "1.5ms"} {
		if r[k] != want {
			t.Errorf("%s = %#v, want %#v (%v)", k, r[k], want, r)
		}
	}
	if _, ok := r["caller"]; ok {
		t.Errorf("caller printed for a scope --log_caller does not name: %v", r)
	}
	if c, _ := recs[1]["caller"].(string); !strings.HasPrefix(c, "nfintercept/logging_test.go:") || recs[1]["msg"] != "multi\nline" || recs[1]["level"] != "warn" {
		t.Errorf("second line: %v", recs[1])
	}
}

func TestLogText(t *testing.T) {
	l, _, stderr, err := openLogs(t, "--log_caller", "all")
	if err != nil {
		t.Fatal(err)
	}
	l.scope("default").Info("applied", "netns", "x y", "duration", 2*time.Millisecond)
	out := stderr.String()
	for _, want := range []string{"level=info", `msg=applied`, "scope=default", `netns="x y"`, "duration=2ms", "caller=nfintercept/logging_test.go:"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("want one line: %q", out)
	}
}

func TestLogTarget(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.log")
	if err := os.WriteFile(file, []byte("before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, stdout, stderr, err := openLogs(t, "--log_target", "stdout", "--log_target", file)
	if err != nil {
		t.Fatal(err)
	}
	l.scope("default").Info("hello")
	l.close()
	got, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(got), "before\n") || !strings.Contains(string(got), "msg=hello") {
		t.Errorf("file target: %q", got)
	}
	if !strings.Contains(stdout.String(), "msg=hello") || stderr.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	_, _, _, err = openLogs(t, "--log_target", filepath.Join(t.TempDir(), "missing", "x.log"))
	if err == nil || !strings.Contains(err.Error(), "--log_target") {
		t.Errorf("unopenable target: %v", err)
	}
}

// The rest of pilot-agent's logging flags are accepted with their types.
func TestLogInertFlags(t *testing.T) {
	if _, _, _, err := openLogs(t, "--log_stacktrace_level=default:error,all:none", "--log_rotate", "/nonexistent/x.log",
		"--log_rotate_max_age", "7", "--log_rotate_max_size", "10", "--log_rotate_max_backups", "3"); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	addLogFlags(fs)
	if err := fs.Parse([]string{"--log_rotate_max_age", "week"}); err == nil {
		t.Error("--log_rotate_max_age week accepted")
	}
}

// istio-iptables as the first word is apply; with --dry-run it renders the
// same as render.
func TestIstioIptablesWord(t *testing.T) {
	args := []string{"-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"}
	var want, errb bytes.Buffer
	if err := run(append([]string{"render"}, args...), nil, &want, &errb, noEnv); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	var got bytes.Buffer
	argv := append(append([]string{"istio-iptables"}, args...), "--log_output_level=default:info", "--log_as_json", "--dry-run")
	if err := run(argv, nil, &got, &errb, noEnv); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if got.String() != want.String() || want.Len() == 0 {
		t.Errorf("istio-iptables --dry-run:\n%s\nrender:\n%s", got.String(), want.String())
	}
	var help bytes.Buffer
	if err := run([]string{"--help"}, nil, &help, &help, noEnv); !errors.Is(err, pflag.ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"nfintercept istio-iptables", "--log_output_level", "--log_as_json", "--log_target"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

// A failure of a JSON-logging run is reported as one JSON object; others
// as the usual line.
func TestReportError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run([]string{"istio-iptables", "--log_as_json", "-b", "80,abc"}, nil, &stdout, &stderr, noEnv)
	var u errUsage
	if !errors.As(err, &u) {
		t.Fatalf("got %v, want a usage error", err)
	}
	var out bytes.Buffer
	reportError(&out, err)
	recs := jsonLines(t, out.String())
	if len(recs) != 1 || recs[0]["level"] != "error" || !strings.Contains(recs[0]["msg"].(string), "-b/--istio-inbound-ports") {
		t.Errorf("JSON failure: %q", out.String())
	}
	out.Reset()
	reportError(&out, run([]string{"-b", "80,abc"}, nil, &stdout, &stderr, noEnv))
	if !strings.HasPrefix(out.String(), "nfintercept: invalid -b/--istio-inbound-ports") {
		t.Errorf("text failure: %q", out.String())
	}
}
