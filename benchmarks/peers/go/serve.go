// SPDX-License-Identifier: MIT
// go_bench http|echo [--port P] [--threads T] [--idle-ms N] — the servers of the I/O workloads
// of benchmarks/README.md, with GOMAXPROCS=T: net/http for http, and a goroutine per
// connection for echo. Each prints port=P once it listens on 127.0.0.1, and exits 0 on SIGINT
// or SIGTERM (http after net/http's graceful Shutdown: idle connections close at once, a
// request being answered completes).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func serve(mode string, args []string) int {
	fs := flag.NewFlagSet("go_bench "+mode, flag.ContinueOnError)
	port := fs.Int("port", 0, "port on 127.0.0.1 (0: any free port)")
	threads := fs.Int("threads", runtime.NumCPU(), "GOMAXPROCS")
	idleMs := fs.Int("idle-ms", 0, "close a connection idle this long (0: never)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *threads < 1 {
		return 2
	}
	runtime.GOMAXPROCS(*threads)
	// Go raises the soft limit itself since 1.19; said here so as not to depend on it.
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}

	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_bench:", err)
		return 1
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	idle := time.Duration(*idleMs) * time.Millisecond

	switch mode {
	case "http":
		return serveHTTP(ln, sigs, idle)
	default:
		return serveEcho(ln, sigs, idle)
	}
}

func serveHTTP(ln net.Listener, sigs chan os.Signal, idle time.Duration) int {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", "13")
		_, _ = w.Write([]byte("Hello, World!"))
	})
	srv := &http.Server{Handler: mux, IdleTimeout: idle}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-sigs:
	case err := <-done:
		fmt.Fprintln(os.Stderr, "go_bench: http:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "go_bench: http shutdown:", err)
		return 1
	}
	return 0
}

func serveEcho(ln net.Listener, sigs chan os.Signal, idle time.Duration) int {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the listener was closed: shutting down
			}
			go echo(c, idle)
		}
	}()
	<-sigs
	ln.Close()
	// The process ends with every connection, as weft_echo's do at their next wait.
	return 0
}

func echo(c net.Conn, idle time.Duration) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		if idle > 0 {
			_ = c.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
