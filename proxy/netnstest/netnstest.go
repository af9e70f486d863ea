// Package netnstest makes throwaway network namespaces for tests (root only).
// They are anonymous: held by a file descriptor, never named in /run/netns,
// so tests do not touch the host's namespace registry (`ip netns add` makes
// /run/netns a shared bind mount, which can hide a running cluster's pods).
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace alive as long as its file is open.
type Netns struct{ File *os.File }

// New creates a namespace with loopback up.
func New() (*Netns, error) {
	fc := make(chan *os.File, 1)
	errc := make(chan error, 1)
	go func() {
		// This thread unshares and is never handed back to the runtime: it
		// dies with the goroutine, the namespace lives on through the file.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		f, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		fc <- f
	}()
	select {
	case err := <-errc:
		return nil, err
	case f := <-fc:
		n := &Netns{File: f}
		if _, err := n.Run("ip", "link", "set", "lo", "up"); err != nil {
			f.Close()
			return nil, err
		}
		return n, nil
	}
}

// Close releases the namespace (it goes away once nothing else uses it).
func (n *Netns) Close() error { return n.File.Close() }

// Fd is the namespace's file descriptor.
func (n *Netns) Fd() int { return int(n.File.Fd()) }

// Do runs f on an OS thread inside the namespace: sockets f opens stay in
// it, and processes it starts are born in it. uid > 0 also drops that thread
// (only it) to uid before f runs.
func (n *Netns) Do(uid int, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Setns(n.Fd(), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		if uid > 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
				errc <- fmt.Errorf("setresuid: %w", e)
				return
			}
		}
		errc <- f()
	}()
	return <-errc
}

// Run runs a command inside the namespace; extra files are the child's fd 3, 4, ...
func (n *Netns) Run(name string, args ...string) (string, error) {
	return n.RunWith(nil, name, args...)
}

// RunWith is Run with extra files (fd 3 onwards in the child).
func (n *Netns) RunWith(extra []*os.File, name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(0, func() (err error) {
		cmd := exec.Command(name, args...)
		cmd.ExtraFiles = extra
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Veth links a and b with a veth pair and gives them the addresses (CIDR notation).
func Veth(a, b *Netns, nameA, addrA, nameB, addrB string) error {
	if _, err := a.RunWith([]*os.File{b.File}, "ip", "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", "/proc/self/fd/3"); err != nil {
		return err
	}
	for _, s := range []struct {
		n          *Netns
		name, addr string
	}{{a, nameA, addrA}, {b, nameB, addrB}} {
		if _, err := s.n.Run("ip", "addr", "add", s.addr, "dev", s.name); err != nil {
			return err
		}
		if _, err := s.n.Run("ip", "link", "set", s.name, "up"); err != nil {
			return err
		}
	}
	return nil
}
