package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func noEnv(string) (string, bool) { return "", false }

// render --format json is the rule model: it decodes back into it with the
// exclude set's element as written.
func TestRenderJSON(t *testing.T) {
	var out, errb bytes.Buffer
	err := run([]string{"render", "--format", "json", "-i", "*", "-x", "10.245.1.2/16"}, nil, &out, &errb, noEnv)
	if err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	var rs struct {
		Tables []struct {
			Kind string
			Sets []struct {
				Name     string
				Type     string
				Prefixes []struct{ Raw string }
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if len(rs.Tables) != 1 || rs.Tables[0].Kind != "nat" || len(rs.Tables[0].Sets) != 1 ||
		rs.Tables[0].Sets[0].Name != "exclude-v4" || rs.Tables[0].Sets[0].Type != "ipv4_addr" ||
		len(rs.Tables[0].Sets[0].Prefixes) != 1 || rs.Tables[0].Sets[0].Prefixes[0].Raw != "10.245.1.2/16" {
		t.Errorf("unexpected model: %+v", rs)
	}
}

// Invalid options are usage errors naming the option; an unknown format too.
func TestRenderRefusals(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"render", "-b", "99999"}, `-b/--istio-inbound-ports "99999"`},
		{[]string{"render", "--format", "yaml"}, `--format "yaml"`},
		{[]string{"render", "--format", "iptables", "--family", "ipv5"}, `--family "ipv5"`},
	} {
		args := c.args
		var out, errb bytes.Buffer
		err := run(args, nil, &out, &errb, noEnv)
		var u errUsage
		if err == nil || !errors.As(err, &u) {
			t.Errorf("%q: got %v, want a usage error", args, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q does not name %s", args, err, c.want)
		}
	}
}
