package translate

import "testing"

func TestHostSystem(t *testing.T) {
	sys := HostSystem()
	if uid, err := sys.LookupUser("root"); err != nil || uid != 0 {
		t.Errorf("LookupUser(root) = %d, %v", uid, err)
	}
	if gid, err := sys.LookupGroup("root"); err != nil || gid != 0 {
		t.Errorf("LookupGroup(root) = %d, %v", gid, err)
	}
	if _, err := sys.LookupUser("no-such-user-nfintercept"); err == nil {
		t.Error("unknown user resolved")
	}
	if _, err := sys.LookupGroup("no-such-group-nfintercept"); err == nil {
		t.Error("unknown group resolved")
	}
}
