//go:build fault

package fault

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// chainPrefix names the iptables chains of the fault suite: one per test
// process, "ecfault-<pid>", jumped to from OUTPUT. Chains of processes that
// no longer exist (a run killed by its timeout) are removed at the next
// start.
const chainPrefix = "ecfault-"

// netCutter cuts coordinators apart on loopback with iptables' owner match:
// each coordinator runs as its own uid, and a rule drops what one uid sends
// to another member's raft and gRPC ports. The test process (root) and the
// edges still reach every member.
type netCutter struct {
	chain string
}

// newNetCutter sets up this process's chain, or says why partitions are
// unavailable (not root, no iptables).
func newNetCutter() (*netCutter, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("no iptables: %w", err)
	}
	if dir, ok := othersCanReach(os.TempDir()); !ok {
		return nil, fmt.Errorf("coordinators would run as other users, who cannot reach %s (no o+x)", dir)
	}
	removeStaleChains()
	n := &netCutter{chain: chainPrefix + strconv.Itoa(os.Getpid())}
	if err := iptables("-N", n.chain); err != nil {
		return nil, err
	}
	if err := iptables("-I", "OUTPUT", "-j", n.chain); err != nil {
		iptables("-X", n.chain)
		return nil, err
	}
	return n, nil
}

// cut drops traffic between m and each of others, both ways, on their raft
// and gRPC ports.
func (n *netCutter) cut(m *member, others []*member) error {
	for _, o := range others {
		for _, r := range [][2]*member{{m, o}, {o, m}} {
			from, to := r[0], r[1]
			for _, addr := range []string{to.raftAddr, to.grpcAddr} {
				if err := iptables("-A", n.chain, "-o", "lo", "-p", "tcp", "-m", "owner", "--uid-owner", strconv.Itoa(from.uid),
					"--dport", loopbackPort(addr), "-j", "DROP"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// heal removes every rule of the chain.
func (n *netCutter) heal() error { return iptables("-F", n.chain) }

// close removes the chain and the jump to it. Safe to call more than once.
func (n *netCutter) close() {
	iptables("-F", n.chain)
	for iptables("-D", "OUTPUT", "-j", n.chain) == nil {
	}
	iptables("-X", n.chain)
}

// removeStaleChains removes the chains of fault-suite processes that are
// gone.
func removeStaleChains() {
	out, err := exec.Command("iptables", "-S").Output()
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		chain, ok := strings.CutPrefix(sc.Text(), "-N "+chainPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(chain)
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + chain); err == nil && pid != os.Getpid() {
			continue // its process still runs
		}
		(&netCutter{chain: chainPrefix + chain}).close()
	}
}

// othersCanReach reports whether other users may traverse dir and each of
// its parents, naming the first that they may not.
func othersCanReach(dir string) (string, bool) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return d, false
		}
		if d == filepath.Dir(d) {
			return "", true
		}
	}
}

func iptables(args ...string) error {
	if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
