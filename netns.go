package nfintercept

import "github.com/nfintercept/nfintercept/nft"

// InNamespace runs fn on an OS thread switched into the network namespace
// at nsPath ("" = the current one): sockets fn creates, and processes it
// starts, belong to that namespace for their whole life. The caller's
// thread is never switched, and a thread that cannot switch back is retired
// rather than reused.
func InNamespace(nsPath string, fn func() error) error {
	return nft.InNamespace(nsPath, fn)
}
