package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/nfintercept/nfintercept/translate"
)

// listOptions are the istio-iptables options holding comma-separated
// lists: their command-line value may be @PATH (or - for stdin) because
// Linux caps one argv string at 128 KiB (~8,700 CIDRs).
var listOptions = []string{
	"proxy-uid", "proxy-gid",
	"istio-inbound-ports", "istio-local-exclude-ports",
	"istio-exclude-interfaces", "kube-virt-interfaces",
	"istio-service-cidr", "istio-service-exclude-cidr",
	"istio-outbound-ports", "istio-local-outbound-ports-exclude",
}

// maxListFile bounds what one list file may hold: 16 MiB is ~380,000 IPv6
// CIDRs written out in full, and refusing more keeps a mistaken path (a
// log, a disk image) from exhausting memory.
const maxListFile = 16 << 20

// readListsFromFiles lets every list option of fs take @PATH or - as its
// value. It must run after the options are registered and before fs
// parses the command line; the environment is not expanded.
func readListsFromFiles(fs *pflag.FlagSet, stdin io.Reader) *listFiles {
	lf := &listFiles{read: map[string]listRead{}}
	for _, long := range listOptions {
		f := fs.Lookup(long)
		if f == nil {
			continue
		}
		f.Usage += " (@PATH: from a file, -: from stdin; one item a line or comma-separated)"
		f.Value = &listFileValue{Value: f.Value, long: long, stdin: stdin, files: lf}
	}
	return lf
}

// listFiles remembers which options were read from where, so that an
// invalid item names the file instead of quoting the whole list.
type listFiles struct {
	stdinUsedBy string // the option that read stdin, which can be read once
	read        map[string]listRead
}

type listRead struct{ source, value string }

// name rewrites an invalid-option error about a list read from a file to
// quote "@PATH" (or "-") rather than the list's contents; the reason still
// names the bad item.
func (lf *listFiles) name(err error) error {
	var u errUsage
	if !errors.As(err, &u) {
		return err
	}
	var oe *translate.OptionError
	if !errors.As(u.error, &oe) || oe.Env != "" {
		return err
	}
	for long, r := range lf.read {
		if strings.HasSuffix(oe.Option, "--"+long) && oe.Value == r.value {
			oe.Value = r.source
		}
	}
	return err
}

// listFileValue expands @PATH and - before handing the list to the
// option's own value. pflag names the option in the error it wraps
// around Set's.
type listFileValue struct {
	pflag.Value
	long  string
	stdin io.Reader
	files *listFiles
}

func (v *listFileValue) Set(s string) error {
	var data []byte
	var err error
	switch {
	case s == "-":
		if v.files.stdinUsedBy != "" {
			return fmt.Errorf("stdin was already read for --%s", v.files.stdinUsedBy)
		}
		v.files.stdinUsedBy = v.long
		data, err = readBounded(v.stdin, "stdin")
	case strings.HasPrefix(s, "@"):
		data, err = readListFile(s[1:])
	default:
		return v.Value.Set(s)
	}
	if err != nil {
		return err
	}
	list := joinList(string(data))
	v.files.read[v.long] = listRead{source: s, value: list}
	return v.Value.Set(list)
}

// readListFile reads a regular file of at most maxListFile bytes. The
// open does not block (a FIFO without writer would hang it), and devices,
// FIFOs and directories are refused before anything is read.
func readListFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("@ needs a file path (@PATH), or use - for stdin")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err // *PathError: names the path
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fileKind(st.Mode()))
	}
	if st.Size() > maxListFile {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a list file may hold", path, st.Size(), maxListFile)
	}
	return readBounded(f, path)
}

// readBounded reads r to the end, refusing more than maxListFile bytes
// (a file may grow after its size was checked; stdin may be endless).
func readBounded(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxListFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxListFile {
		return nil, fmt.Errorf("%s: more than the %d bytes a list may hold", name, maxListFile)
	}
	return data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}

// joinList turns a list file (items separated by newlines and/or commas,
// '#' to the end of a line a comment, blanks around items ignored) into
// the comma-separated form the option takes on the command line.
func joinList(text string) string {
	var b strings.Builder
	b.Grow(len(text))
	for line := range strings.Lines(text) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(item)
		}
	}
	return b.String()
}
