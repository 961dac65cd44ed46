package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// logLevel reads the conflist's log_level (default info).
func logLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "none":
		return slog.LevelError + 100, nil
	}
	return 0, fmt.Errorf("log_level %q: want debug, info, warn, error or none", s)
}

// logCall writes the call's one JSON line to stderr and, when set, the
// log file (appended). Failures are logged at error level; a log file that
// cannot be opened is named in the line, raised to warn.
func logCall(stderr io.Writer, level, file string, c *call, cerr *types.Error) {
	min, _ := logLevel(level)
	w := stderr
	var fileErr error // reported in the line, on stderr only
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			defer f.Close()
			w = io.MultiWriter(stderr, f)
		} else {
			fileErr = err
		}
	}
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: min}))
	attrs := []slog.Attr{
		slog.String("command", c.command),
		slog.String("container_id", c.containerID),
		slog.String("pod", c.pod),
		slog.String("netns", c.netns),
		slog.String("decision", c.decision),
		slog.Int("tables", c.tables),
		slog.Int("rules", c.rules),
		slog.Duration("duration", time.Since(c.start)),
	}
	lvl, msg := slog.LevelInfo, "ok"
	if fileErr != nil {
		lvl = slog.LevelWarn
		attrs = append(attrs, slog.String("log_file_error", fileErr.Error()))
	}
	if cerr != nil {
		lvl, msg = slog.LevelError, "failed"
		attrs = append(attrs, slog.Uint64("code", uint64(cerr.Code)), slog.String("error", cerr.Msg))
		if cerr.Details != "" {
			attrs = append(attrs, slog.String("details", cerr.Details))
		}
	}
	log.LogAttrs(context.Background(), lvl, msg, attrs...)
}
