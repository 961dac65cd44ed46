// Package equiv checks that nfintercept's nftables rules and their
// iptables view make the same decision for the same packets.
//
// One configuration (a Case: istio-iptables argv, environment,
// resolv.conf) is installed in three identical setups, the twins:
//
//   - nft: nfintercept.Apply, i.e. nftables over netlink plus nfintercept's
//     own policy routing;
//   - iptables-nft and iptables-legacy: the iptables view of the same model
//     (compat.Restore, both families) loaded with iptables-restore
//     --noflush, plus what istio-iptables' ConfigureRoutes adds (::6 on lo,
//     the TPROXY "fwmark lookup" rule and local route), derived from the
//     configuration with the ip tool.
//
// Other backends are chosen with RunOptions.Backends: nfintercept-cli runs
// the nfintercept binary, and pilot-agent (the oracle) Istio's own
// pilot-agent istio-iptables, both with the case's istio-init argv
// (Case.InitArgv) inside the pod, with the case's environment and
// resolv.conf, as the istio-init container runs.
//
// Every twin is three namespaces, all named Prefix+pid+...:
//
//	side ──sK── <extra interfaces: eth1, not-istio-nic, ...> ──┐
//	                                                           pod ──eth0── peer
//
// The pod (172.30.0.2, fd00:30::2) has default routes via the peer and
// routes 198.18.K.0/24, fd00:18:K::/64 through its extra interface K (one
// per name in -c and -k; "x+" becomes "x0") to the side. The peer and the
// side answer every TCP connection and UDP datagram that enters them
// through a TPROXY catch-all, reporting the original destination, so no
// destination needs an address. The pod forwards (a VM behind a virtual
// interface is the side, or the peer for eth0) and blackholes the VIPs,
// which only interception can accept. In the pod, the proxy's listeners
// (outbound, inbound, DNS 15053) run as the first proxy uid/gid like
// Envoy, transparent like Envoy's; every other port a flow ends at has an
// application listener.
//
// Flows (see Flows) are derived deterministically from the configuration
// and run concurrently through the three twins by an in-process client that
// creates each socket on a thread switched into the namespace with the
// flow's fsuid/fsgid (what owner matching reads). A Decision is the
// listener that answered with the destination and source it saw, or the
// class of failure. Any flow whose decisions differ is a Difference;
// differences that do not reproduce on retry are reported as flaky.
//
// Owner and group names: iptables-restore resolves names through NSS and
// the corpus' names (java, ftp) exist nowhere, so Case.Options replaces
// every group name by a fixed number (GroupID) in the option strings before
// anything is built; all twins then match the same gid.
//
// Reproducing a failure: the test names the case (corpus name or
// gen-SEED-NN, plus the mode) and prints its options, every differing flow
// with the three decisions, the iptables input and the nft twin's ruleset
// and routing. NFI_EQ_SEED / NFI_EQ_COUNT choose the generated cases,
// NFI_EQ_VERBOSE=1 logs every flow's decision.
package equiv
