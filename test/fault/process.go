//go:build fault

package fault

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one service process (a coordinator or an edge), restartable with
// the same arguments and data dir. Its output, every incarnation, goes to
// one log file. An exit the harness did not cause is remembered.
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string // added to the harness's environment
	uid     int      // 0: run as the test's own user
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current incarnation exited
	expected bool          // the harness killed or stopped the current incarnation
	paused   bool
	starts   int
	exits    []string // exits the harness did not cause
}

// start runs a new incarnation. It fails if one is running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running", p.name)
		}
	}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(log, "==== fault harness: start #%d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), p.env...)
	if p.uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.uid)}}
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected, p.paused = cmd, done, false, false
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		if !p.expected {
			p.exits = append(p.exits, fmt.Sprintf("start #%d: %v", p.starts, err))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the current incarnation has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// usable reports whether the process is running and not stopped.
func (p *proc) usable() bool {
	p.mu.Lock()
	paused := p.paused
	p.mu.Unlock()
	return !paused && p.running()
}

// kill SIGKILLs the current incarnation and waits until it is gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.expected = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// pause sends SIGSTOP; resume sends SIGCONT.
func (p *proc) pause() error  { return p.signal(syscall.SIGSTOP, true) }
func (p *proc) resume() error { return p.signal(syscall.SIGCONT, false) }

func (p *proc) signal(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: never started", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	p.paused = paused
	return nil
}

// stop ends the process for good at the end of a run: SIGCONT in case it is
// stopped, SIGTERM, and SIGKILL after ten seconds.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.expected = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// report is the process as the checkers see it.
func (p *proc) report() ProcReport {
	running := p.running()
	p.mu.Lock()
	exits := append([]string(nil), p.exits...)
	p.mu.Unlock()
	log, err := os.ReadFile(p.logPath)
	if err != nil {
		log = []byte("(log unreadable: " + err.Error() + ")")
	}
	return ProcReport{Name: p.name, Running: running, Exits: exits, Log: string(log)}
}
