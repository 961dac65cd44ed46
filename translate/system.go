package translate

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// System answers the questions about the machine a Config depends on, so
// Options.Config stays testable. HostSystem asks the real machine.
type System interface {
	// LookupUser returns the uid of a user name.
	LookupUser(name string) (uint32, error)
	// LookupGroup returns the gid of a group name.
	LookupGroup(name string) (uint32, error)
	// ReadResolvConf returns the contents of /etc/resolv.conf.
	ReadResolvConf() ([]byte, error)
}

// HostSystem returns the System of the machine nfintercept runs on
// (os/user databases, /etc/resolv.conf).
func HostSystem() System { return hostSystem{} }

type hostSystem struct{}

func (hostSystem) LookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	return parseID("user", name, u.Uid)
}

func (hostSystem) LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return parseID("group", name, g.Gid)
}

func (hostSystem) ReadResolvConf() ([]byte, error) {
	return os.ReadFile(ResolvConfPath)
}

func parseID(kind, name, id string) (uint32, error) {
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q has id %q, not a 32-bit number", kind, name, id)
	}
	return uint32(n), nil
}
