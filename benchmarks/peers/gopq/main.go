// SPDX-License-Identifier: MIT

// pq_bench WORKLOAD THREADS -- the PostgreSQL workloads of benchmarks/README.md (pg-add,
// pg-sleep) on Go's database/sql with lib/pq (Debian's golang-github-lib-pq-dev), against the
// server the PG* variables name. A goroutine per query; database/sql's pool, limited to the
// workload's connections, makes the goroutines beyond it wait. GOMAXPROCS=THREADS. It prints
// nothing for pg-cancel.
//
// Built without modules against /usr/share/gocode (tools/bench: GO111MODULE=off).
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/lib/pq"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)*1e-6
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pq_bench pg-add|pg-sleep THREADS")
		os.Exit(2)
	}
	var query string
	var queries, conns int
	param := false
	switch os.Args[1] {
	case "pg-add":
		query, queries, conns, param = "SELECT $1::int + 1", 20000, 16, true
	case "pg-sleep":
		query, queries, conns = "SELECT pg_sleep(0.005)", 2000, 64
	default:
		return // not expressed
	}
	threads, err := strconv.Atoi(os.Args[2])
	if err != nil || threads < 1 {
		os.Exit(2)
	}
	runtime.GOMAXPROCS(threads)

	// Everything else from the PG* variables. binary_parameters: a query with parameters in one
	// round trip, as libpq's PQsendQueryParams (lib/pq otherwise prepares it first, in another).
	db, err := sql.Open("postgres", "binary_parameters=yes")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	ctx := context.Background()
	// Connected before the interval: all taken at once, then given back.
	held := make([]*sql.Conn, conns)
	for i := range held {
		if held[i], err = db.Conn(ctx); err == nil {
			err = held[i].PingContext(ctx)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect:", err)
			os.Exit(1)
		}
	}
	for _, c := range held {
		c.Close()
	}

	var ok, failed int64
	var wg sync.WaitGroup
	t0 := time.Now()
	c0 := cpuSeconds()
	for i := 0; i < queries; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if param {
				var v int
				if err := db.QueryRowContext(ctx, query, i).Scan(&v); err != nil {
					atomic.AddInt64(&failed, 1)
				} else if v == i+1 {
					atomic.AddInt64(&ok, 1)
				}
			} else {
				var s string
				if err := db.QueryRowContext(ctx, query).Scan(&s); err != nil {
					atomic.AddInt64(&failed, 1)
				} else {
					atomic.AddInt64(&ok, 1)
				}
			}
		}(i)
	}
	wg.Wait()
	seconds := time.Since(t0).Seconds()
	cpu := cpuSeconds() - c0
	fmt.Printf("%s threads=%d seconds=%.6f check=%d conns=%d client_cpu_us_per_query=%.3f\n",
		os.Args[1], threads, seconds, ok, conns, cpu*1e6/float64(queries))
	db.Close()
	if failed != 0 || ok != int64(queries) {
		os.Exit(1)
	}
}
