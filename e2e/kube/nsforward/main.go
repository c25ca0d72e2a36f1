// Command nsforward carries TCP connections across the boundary of the
// network namespace e2e/kube/kube.sh runs the Kubernetes control plane and
// Knative in. That namespace has only a loopback interface, so nothing
// inside it can reach the host's 127.0.0.1 (the stack's Cassandra,
// VictoriaMetrics, Prometheus, the NVCF simulator) and nothing on the host
// can reach the API server, unless a process straddling both carries the
// bytes. This one does, for a list of forwards:
//
//	nsforward -netns /proc/PID/ns/net in:127.0.0.1:9042=127.0.0.1:9042 out:127.0.0.1:16443=127.0.0.1:6443
//
// "in" listens inside the namespace and dials on the host; "out" listens
// on the host and dials inside the namespace. A socket belongs to the
// network namespace of the thread that created it, so the socket calls
// meant for the namespace run on an OS thread locked to a goroutine that
// entered it with setns(2); that goroutine ends without unlocking, which
// makes the Go runtime discard the thread instead of reusing it for
// unrelated work in the wrong namespace.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// forward is one listener and the address its connections are carried to.
type forward struct {
	listenInside bool   // listen in the namespace (and dial on the host); else the reverse
	listen, dial string // host:port
}

func parseForward(spec string) (forward, error) {
	side, addrs, ok := strings.Cut(spec, ":")
	if !ok || (side != "in" && side != "out") {
		return forward{}, fmt.Errorf("forward %q: want in:LISTEN=DIAL or out:LISTEN=DIAL", spec)
	}
	listen, dial, ok := strings.Cut(addrs, "=")
	if !ok {
		return forward{}, fmt.Errorf("forward %q: want in:LISTEN=DIAL or out:LISTEN=DIAL", spec)
	}
	for _, a := range []string{listen, dial} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return forward{}, fmt.Errorf("forward %q: %w", spec, err)
		}
	}
	return forward{listenInside: side == "in", listen: listen, dial: dial}, nil
}

// namespace is the network namespace across whose boundary connections
// are carried.
type namespace struct{ path string }

// do runs f on a fresh OS thread that has entered the namespace; the
// thread is discarded afterwards.
func (ns namespace) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread is in the namespace now, and a
		// goroutine that exits locked takes its thread with it.
		fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", ns.path, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func (ns namespace) listen(addr string, inside bool) (l net.Listener, err error) {
	if !inside {
		return net.Listen("tcp", addr)
	}
	err = ns.do(func() error {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

func (ns namespace) dial(addr string, inside bool) (c net.Conn, err error) {
	if !inside {
		return net.Dial("tcp", addr)
	}
	err = ns.do(func() error {
		c, err = net.Dial("tcp", addr)
		return err
	})
	return c, err
}

// serve accepts on l and carries each connection to f.dial until l fails.
func (ns namespace) serve(l net.Listener, f forward) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept on %s: %w", f.listen, err)
		}
		go func() {
			defer c.Close()
			// The far side is dialled on the opposite side of the boundary.
			d, err := ns.dial(f.dial, !f.listenInside)
			if err != nil {
				log.Printf("%s -> %s: %v", f.listen, f.dial, err)
				return
			}
			defer d.Close()
			pipe(c.(*net.TCPConn), d.(*net.TCPConn))
		}()
	}
}

// pipe copies both ways, passing each half-close on, until both directions
// are done.
func pipe(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	copyHalf := func(dst, src *net.TCPConn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, net.ErrClosed) {
			// A reset by either end ends both directions.
			a.Close()
			b.Close()
			return
		}
		dst.CloseWrite()
	}
	wg.Add(2)
	go copyHalf(a, b)
	go copyHalf(b, a)
	wg.Wait()
}

func main() {
	nsPath := flag.String("netns", "", "the network namespace's file, e.g. /proc/PID/ns/net")
	readyFile := flag.String("ready", "", "a file created once every listener is open")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: nsforward -netns /proc/PID/ns/net [-ready FILE] in:LISTEN=DIAL|out:LISTEN=DIAL ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *nsPath == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	ns := namespace{path: *nsPath}
	var forwards []forward
	for _, spec := range flag.Args() {
		f, err := parseForward(spec)
		if err != nil {
			log.Fatal(err)
		}
		forwards = append(forwards, f)
	}
	// Every listener is open before the ready file appears, so a caller
	// that waits for it finds all of them accepting.
	listeners := make([]net.Listener, len(forwards))
	for i, f := range forwards {
		l, err := ns.listen(f.listen, f.listenInside)
		if err != nil {
			log.Fatalf("listen %s: %v", f.listen, err)
		}
		listeners[i] = l
	}
	log.Printf("forwarding %s", strings.Join(flag.Args(), " "))
	if *readyFile != "" {
		if err := os.WriteFile(*readyFile, nil, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	errc := make(chan error, len(forwards))
	for i, f := range forwards {
		go func() { errc <- ns.serve(listeners[i], f) }()
	}
	log.Fatal(<-errc)
}
