package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A log_file that cannot be opened is reported inside the call's one JSON
// line on stderr (warn, naming the file), not as a separate plain line.
func TestLogFileUnusable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "missing-dir", "cni.log")
	var stderr bytes.Buffer
	logCall(&stderr, "info", file, &call{command: "ADD", decision: "captured", start: time.Now()}, nil)
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one line on stderr, got %d:\n%s", len(lines), stderr.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, lines[0])
	}
	if rec["level"] != "WARN" || rec["decision"] != "captured" {
		t.Errorf("level %v decision %v, want WARN captured:\n%s", rec["level"], rec["decision"], lines[0])
	}
	if msg, _ := rec["log_file_error"].(string); !strings.Contains(msg, file) || !strings.Contains(msg, "no such file") {
		t.Errorf("log_file_error %q does not name %s and the cause", msg, file)
	}
}
