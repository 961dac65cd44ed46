package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/translate"
)

// Logging takes pilot-agent's logging flags (Istio's log package, present
// on every pilot-agent subcommand, so istio-init's argv carries them) and
// honours them with log/slog. Messages belong to scopes; every scope name
// is accepted, nfintercept itself logs under "default".

// defaultScope is the scope of nfintercept's own messages.
const defaultScope = "default"

// levelNone is above every level a message can have: nothing is printed.
const levelNone = slog.Level(1 << 20)

// levelFatal is Istio's "fatal", above error.
const levelFatal = slog.LevelError + 4

// levelNames are Istio's level names, in increasing severity.
var levelNames = []struct {
	name  string
	level slog.Level
}{
	{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn},
	{"error", slog.LevelError}, {"fatal", levelFatal}, {"none", levelNone},
}

// logFlags holds the values of pilot-agent's logging flags.
type logFlags struct {
	outputLevel     string
	asJSON          bool
	caller          string
	stacktraceLevel string
	targets         []string
	// Rotation belongs to a long-running agent; a one-shot command has
	// nothing to rotate, so these are parsed and ignored.
	rotate                                        string
	rotateMaxAge, rotateMaxSize, rotateMaxBackups int
	vklog                                         int // klog verbosity: nfintercept has no klog output

	usage *pflag.FlagSet // for --help, which lists them in their own section
}

// addLogFlags registers the logging flags on fs with pilot-agent's names,
// types and defaults, except that logs go to stderr by default (stdout
// belongs to render's output).
func addLogFlags(fs *pflag.FlagSet) *logFlags {
	lf := &logFlags{usage: pflag.NewFlagSet("logging", pflag.ContinueOnError)}
	u := lf.usage
	u.SortFlags = false
	u.StringVar(&lf.outputLevel, "log_output_level", "default:info",
		"minimum level per scope: scope:level[,scope:level...]; a bare level is the default scope's, scope \"all\" sets every scope; levels debug, info, warn, error, fatal, none")
	u.BoolVar(&lf.asJSON, "log_as_json", false,
		"print each log line as one JSON object (time, level, scope, msg and the message's fields)")
	u.StringVar(&lf.caller, "log_caller", "",
		"comma-separated scopes whose lines include the caller (file:line); \"all\" for every scope")
	u.StringVar(&lf.stacktraceLevel, "log_stacktrace_level", "default:none",
		"accepted for pilot-agent compatibility (same syntax as --log_output_level); no stack traces are printed")
	u.StringArrayVar(&lf.targets, "log_target", []string{"stderr"},
		"where logs go: stdout, stderr or a file path (appended to); repeat for several")
	u.StringVar(&lf.rotate, "log_rotate", "", "accepted for pilot-agent compatibility; no rotating log file is written")
	u.IntVar(&lf.rotateMaxAge, "log_rotate_max_age", 30, "accepted for pilot-agent compatibility (days)")
	u.IntVar(&lf.rotateMaxSize, "log_rotate_max_size", 104857600, "accepted for pilot-agent compatibility (megabytes)")
	u.IntVar(&lf.rotateMaxBackups, "log_rotate_max_backups", 1000, "accepted for pilot-agent compatibility")
	u.IntVar(&lf.vklog, "vklog", 0, "accepted for pilot-agent compatibility (klog verbosity)")
	// fs gets hidden copies (sharing the values) so its own usage lists
	// only the Istio options.
	u.VisitAll(func(f *pflag.Flag) {
		c := *f
		c.Hidden = true
		fs.AddFlag(&c)
	})
	return lf
}

// help is the logging section of --help.
func (lf *logFlags) help() string {
	return "\nLogging (pilot-agent's flags; stderr by default):\n" + lf.usage.FlagUsages()
}

// scopeLevels is a parsed level spec: a level per named scope, and the
// level of every scope not named.
type scopeLevels struct {
	scopes map[string]slog.Level
	others slog.Level
}

func (s scopeLevels) of(scope string) slog.Level {
	if l, ok := s.scopes[scope]; ok {
		return l
	}
	return s.others
}

// parseLevels reads scope:level[,scope:level...] as pilot-agent does:
// items apply in order; a bare level is the default scope's; "all" sets
// every scope, replacing what came before it. Scopes not named stay at
// base. An empty spec changes nothing.
func parseLevels(flag, spec string, base slog.Level) (scopeLevels, error) {
	s := scopeLevels{scopes: map[string]slog.Level{}, others: base}
	if spec == "" {
		return s, nil
	}
	for _, item := range strings.Split(spec, ",") {
		scope, name, ok := strings.Cut(item, ":")
		if !ok {
			scope, name = defaultScope, item
		}
		if scope == "" || strings.Contains(name, ":") {
			return s, fmt.Errorf("invalid --%s %q: %q is not scope:level", flag, spec, item)
		}
		level, known := parseLevel(name)
		if !known {
			return s, fmt.Errorf("invalid --%s %q: unknown level %q in %q (levels: debug, info, warn, error, fatal, none)", flag, spec, name, item)
		}
		if scope == "all" {
			s = scopeLevels{scopes: map[string]slog.Level{}, others: level}
			continue
		}
		s.scopes[scope] = level
	}
	return s, nil
}

func parseLevel(name string) (slog.Level, bool) {
	for _, l := range levelNames {
		if l.name == name {
			return l.level, true
		}
	}
	return 0, false
}

func levelName(l slog.Level) string {
	for _, n := range levelNames {
		if n.level == l {
			return n.name
		}
	}
	return strings.ToLower(l.String())
}

// logs is the configured logging of one run.
type logs struct {
	levels  scopeLevels
	callers map[string]bool // scope → print the caller; "all" for every scope
	plain   slog.Handler
	source  slog.Handler // the same, with the caller
	asJSON  bool
	files   []*os.File
}

// open validates the flags and opens the targets. Errors name the flag
// and the value (the caller reports them as bad input).
func (lf *logFlags) open(stdout, stderr io.Writer) (*logs, error) {
	levels, err := parseLevels("log_output_level", lf.outputLevel, slog.LevelInfo)
	if err != nil {
		return nil, err
	}
	if _, err := parseLevels("log_stacktrace_level", lf.stacktraceLevel, levelNone); err != nil {
		return nil, err
	}
	l := &logs{levels: levels, callers: map[string]bool{}, asJSON: lf.asJSON}
	for _, scope := range strings.Split(lf.caller, ",") {
		if scope = strings.TrimSpace(scope); scope != "" {
			l.callers[scope] = true
		}
	}
	var ws []io.Writer
	for _, target := range lf.targets {
		switch target {
		case "stdout":
			ws = append(ws, stdout)
		case "stderr":
			ws = append(ws, stderr)
		case "":
			return nil, fmt.Errorf("invalid --log_target \"\": want stdout, stderr or a file path")
		default:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				l.close()
				return nil, fmt.Errorf("invalid --log_target %q: %w", target, err)
			}
			l.files = append(l.files, f)
			ws = append(ws, f)
		}
	}
	w := io.MultiWriter(ws...)
	l.plain = newHandler(w, lf.asJSON, false)
	l.source = newHandler(w, lf.asJSON, true)
	return l, nil
}

func (l *logs) close() {
	for _, f := range l.files {
		f.Close()
	}
}

// scope returns the logger of a scope.
func (l *logs) scope(name string) *slog.Logger {
	h := l.plain
	if l.callers[name] || l.callers["all"] {
		h = l.source
	}
	return slog.New(&levelHandler{Handler: h.WithAttrs([]slog.Attr{slog.String("scope", name)}), min: l.levels.of(name)})
}

// newHandler is slog's text or JSON handler with Istio's key names: level
// in lower case, the caller as "caller": "dir/file.go:line", durations
// spelled out.
func newHandler(w io.Writer, asJSON, caller bool) slog.Handler {
	opts := &slog.HandlerOptions{
		AddSource: caller,
		Level:     slog.LevelDebug, // levelHandler filters per scope
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch {
			case a.Key == slog.LevelKey:
				if l, ok := a.Value.Any().(slog.Level); ok {
					return slog.String(slog.LevelKey, levelName(l))
				}
			case a.Key == slog.SourceKey:
				if src, ok := a.Value.Any().(*slog.Source); ok {
					return slog.String("caller", fmt.Sprintf("%s/%s:%d", filepath.Base(filepath.Dir(src.File)), filepath.Base(src.File), src.Line))
				}
			case a.Value.Kind() == slog.KindDuration:
				return slog.String(a.Key, a.Value.Duration().String())
			}
			return a
		},
	}
	if asJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// levelHandler drops records below its scope's level.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h *levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{Handler: h.Handler.WithGroup(name), min: h.min}
}

// jsonFailure marks a failure of a run whose logs are JSON, so main reports
// it as a JSON line too.
type jsonFailure struct{ error }

func (e jsonFailure) Unwrap() error { return e.error }

// markFailure wraps err for reportError when the run logs JSON.
func (l *logs) markFailure(err error) error {
	if err == nil || l == nil || !l.asJSON {
		return err
	}
	return jsonFailure{err}
}

// reportError prints the command's failure on w: one "nfintercept: ..."
// line, or one JSON object (level error, scope default) when the run logs
// JSON. It is printed whatever --log_output_level says: the exit status
// alone would not tell why a pod failed to start.
func reportError(w io.Writer, err error) {
	var j jsonFailure
	if errors.As(err, &j) {
		slog.New(newHandler(w, true, false)).Error(err.Error(), "scope", defaultScope)
		return
	}
	fmt.Fprintln(w, "nfintercept: "+err.Error())
}

// rulesetFields describe an applied ruleset in a log line.
func rulesetFields(netns string, rs *translate.Ruleset, took time.Duration) []any {
	var tables, chains, rules, sets int
	for _, t := range rs.Tables {
		tables++
		sets += len(t.Sets)
		for _, c := range t.Chains {
			chains++
			rules += len(c.Rules)
		}
	}
	return []any{"netns", netns, "tables", tables, "chains", chains, "rules", rules, "sets", sets,
		"families", rs.Families.String(), "duration", took}
}
