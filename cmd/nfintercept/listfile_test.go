package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// renderJSON runs `render --format json args...` through run and returns
// the model, or the error.
func renderJSON(t *testing.T, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(append([]string{"render", "--format", "json"}, args...), stdin, &out, &errb, noEnv)
	return out.String(), err
}

// A list read from a file or stdin (lines, commas, comments, blanks and
// CRLF mixed) yields the same model as the same list given inline, for
// every kind of list option.
func TestListFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cidrs := write("cidrs", "# excluded ranges\n10.1.0.0/16\r\n 10.2.0.0/16 , 10.3.0.0/16\n\n192.0.2.7/32 # one host\n")
	ports := write("ports", "15020,\n15021\n15090")
	ifaces := write("ifaces", "eth1\nveth+\n")
	base := []string{"-i", "*", "-b", "*"}
	for _, c := range []struct {
		fromFile []string
		stdin    string
		inline   []string
	}{
		{[]string{"-x", "@" + cidrs}, "", []string{"-x", "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,192.0.2.7/32"}},
		{[]string{"--istio-service-exclude-cidr=@" + cidrs}, "", []string{"-x", "10.1.0.0/16,10.2.0.0/16,10.3.0.0/16,192.0.2.7/32"}},
		{[]string{"-d", "-"}, "15020\n15021\n15090\n", []string{"-d", "15020,15021,15090"}},
		{[]string{"-d", "@" + ports, "-o", "-"}, "53,\n", []string{"-d", "15020,15021,15090", "-o", "53"}},
		{[]string{"-c", "@" + ifaces, "-k", "@" + ifaces}, "", []string{"-c", "eth1,veth+", "-k", "eth1,veth+"}},
	} {
		got, err := renderJSON(t, strings.NewReader(c.stdin), append(slices.Clone(base), c.fromFile...)...)
		if err != nil {
			t.Errorf("%q: %v", c.fromFile, err)
			continue
		}
		want, err := renderJSON(t, nil, append(slices.Clone(base), c.inline...)...)
		if err != nil {
			t.Fatalf("%q: %v", c.inline, err)
		}
		if got != want {
			t.Errorf("%q gives a different model than %q:\n%s\nwant:\n%s", c.fromFile, c.inline, got, want)
		}
	}
}

// Unusable list files are usage errors naming the option and the path,
// and nothing blocks: a FIFO without writer, a device, a directory, a
// file too large, an endless stdin, stdin asked for twice.
func TestListFileRefusals(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxListFile + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		args  []string
		stdin io.Reader
		want  []string
	}{
		{[]string{"-x", "@" + missing}, nil, []string{"--istio-service-exclude-cidr", missing, "no such file"}},
		{[]string{"-x", "@" + fifo}, nil, []string{"--istio-service-exclude-cidr", fifo, "not a regular file (a named pipe)"}},
		{[]string{"-b", "@/dev/zero"}, nil, []string{"--istio-inbound-ports", "/dev/zero", "not a regular file (a character device)"}},
		{[]string{"-c", "@" + dir}, nil, []string{"--istio-exclude-interfaces", dir, "not a regular file (a directory)"}},
		{[]string{"-i", "@" + big}, nil, []string{"--istio-service-cidr", big, "more than the 16777216"}},
		{[]string{"-i", "@"}, nil, []string{"--istio-service-cidr", "needs a file path"}},
		{[]string{"-q", "-"}, zeros{}, []string{"--istio-outbound-ports", "stdin: more than the 16777216"}},
		{[]string{"-q", "-", "-o", "-"}, strings.NewReader("80"), []string{"--istio-local-outbound-ports-exclude", "stdin was already read for --istio-outbound-ports"}},
	} {
		_, err := renderJSON(t, c.stdin, c.args...)
		var u errUsage
		if !errors.As(err, &u) {
			t.Errorf("%q: got %v, want a usage error", c.args, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not say %q", c.args, err, w)
			}
		}
	}
}

// zeros is an endless stdin (/dev/zero through a pipe).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A bad item deep in a large list is reported as a one-line error naming
// the file and quoting the item, not the whole list.
func TestListFileBadItem(t *testing.T) {
	var b strings.Builder
	for i := range 50_000 {
		fmt.Fprintf(&b, "10.%d.%d.0/24\n", i>>8&255, i&255)
	}
	b.WriteString("10.0.0.300/32\n")
	p := filepath.Join(t.TempDir(), "cidrs")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := renderJSON(t, nil, "-x", "@"+p)
	var u errUsage
	if !errors.As(err, &u) {
		t.Fatalf("got %v, want a usage error", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"10.0.0.300/32" is not a CIDR`) || !strings.Contains(msg, `-x/--istio-service-exclude-cidr "@`+p+`"`) ||
		strings.Contains(msg, "\n") || len(msg) > 400 {
		t.Errorf("want one short line naming the option, the file and the item, got %d bytes: %.600s", len(msg), msg)
	}
	// From stdin: "-" is quoted.
	_, err = renderJSON(t, strings.NewReader(b.String()), "-x", "-")
	if err == nil || !strings.Contains(err.Error(), `-x/--istio-service-exclude-cidr "-": "10.0.0.300/32" is not a CIDR`) {
		t.Errorf("stdin: got %v", err)
	}
}

// TestListFile100k applies a 100,000-CIDR exclude list — ten times what
// one argv string may hold — through the binary from a file, and reads the
// kernel's set back with nft: every CIDR, nothing else.
func TestListFile100k(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (the oracle reading the set back)")
	}
	bin := buildBinary(t)
	// Distinct, non-adjacent ranges (the kernel would merge adjacent
	// ones): /32s and /30s, never touching.
	want := make([]string, 0, 100_000)
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 14), byte(i >> 6), byte(i << 2)})
		if i%2 == 0 {
			want = append(want, netip.PrefixFrom(a, 32).String())
		} else {
			want = append(want, netip.PrefixFrom(a, 31).String())
		}
	}
	list := filepath.Join(t.TempDir(), "exclude.txt")
	if err := os.WriteFile(list, []byte(strings.Join(want, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inline := strings.Join(want, ",")
	if err := exec.Command(bin, "render", "-x", inline).Run(); !errors.Is(err, syscall.E2BIG) {
		t.Fatalf("the %d-byte list given inline: %v, want E2BIG (else this test does not exceed the argv limit)", len(inline), err)
	}

	ns := fmt.Sprintf("nfi-cmd-%d", rand.Intn(1e9))
	sh(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	sh(t, "unshare", "-n", bin, "-i", "*", "-b", "*", "-x", "@"+list, "--network-namespace", ns)

	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "nfintercept-nat", "exclude-v4").Output()
	if err != nil {
		t.Fatalf("nft list set: %v", err)
	}
	got := setPrefixes(t, out)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kernel set holds %d elements, want the %d of the file", len(got), len(want))
	}
}

// setPrefixes decodes the elements of `nft -j list set`: a bare address
// for a host, {"prefix": {...}} otherwise.
func setPrefixes(t *testing.T, out []byte) []string {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j: %v", err)
	}
	var got []string
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			var host string
			if json.Unmarshal(e, &host) == nil {
				got = append(got, host+"/32")
				continue
			}
			var p struct {
				Prefix struct {
					Addr string `json:"addr"`
					Len  int    `json:"len"`
				} `json:"prefix"`
			}
			if err := json.Unmarshal(e, &p); err != nil || p.Prefix.Addr == "" {
				t.Fatalf("unexpected set element %s", e)
			}
			got = append(got, fmt.Sprintf("%s/%d", p.Prefix.Addr, p.Prefix.Len))
		}
	}
	return got
}
