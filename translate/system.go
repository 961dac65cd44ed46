package translate

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"syscall"
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
	return readResolvConf(ResolvConfPath)
}

// maxResolvConf bounds what is read of a resolv.conf: real ones are a few
// hundred bytes; a huge or endless one (a device) must not exhaust memory.
const maxResolvConf = 1 << 20

// readResolvConf reads a regular file of at most maxResolvConf bytes. It
// is opened non-blocking, so a FIFO in its place cannot hang the caller.
func readResolvConf(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxResolvConf+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxResolvConf {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxResolvConf)
	}
	return data, nil
}

func parseID(kind, name, id string) (uint32, error) {
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q has id %q, not a 32-bit number", kind, name, id)
	}
	return uint32(n), nil
}
