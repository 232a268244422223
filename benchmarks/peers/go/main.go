// SPDX-License-Identifier: MIT
// go_bench WORKLOAD THREADS — the Go peer of weft_bench (benchmarks/README.md), with
// GOMAXPROCS=THREADS. Goroutines are Go's green threads; sync.WaitGroup plays the scope's join,
// a buffered channel the semaphore, and context the scope's cancellation.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	fibN         = 30
	fibExpect    = 832040
	skynetSize   = 1000000
	skynetExpect = 499999500000
	yields       = 1000000
	semfanTasks  = 100000
	semfanTokens = 64
	roundTrips   = 1000000
	chanItems    = 1000000
	chanStages   = 3
	chanCapacity = 64
	itemsSum     = chanItems * (chanItems - 1) / 2
)

type result struct {
	seconds    float64
	check      int64
	expect     int64
	nsPerOp    float64 // < 0: not reported
	rssPerTask float64 // < 0: not reported
}

func fibTasks(n int) int {
	if n < 2 {
		return n
	}
	var x int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		x = fibTasks(n - 1)
		wg.Done()
	}()
	y := fibTasks(n - 2)
	wg.Wait()
	return x + y
}

func fibPlain(n int) int {
	if n < 2 {
		return n
	}
	return fibPlain(n-1) + fibPlain(n-2)
}

// The children write into the parent's array and the WaitGroup joins them, as the weft
// version writes into the parent's stack frame before its scope join.
func skynet(num, size int64) int64 {
	if size == 1 {
		return num
	}
	var kids [10]int64
	var wg sync.WaitGroup
	step := size / 10
	wg.Add(10)
	for i := int64(0); i < 10; i++ {
		go func(i int64) {
			kids[i] = skynet(num+i*step, step)
			wg.Done()
		}(i)
	}
	wg.Wait()
	var sum int64
	for _, k := range kids {
		sum += k
	}
	return sum
}

func yieldBench() result {
	var done int64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	for i := 0; i < 2; i++ {
		go func() {
			for j := 0; j < yields; j++ {
				runtime.Gosched()
			}
			atomic.AddInt64(&done, yields)
			wg.Done()
		}()
	}
	wg.Wait()
	s := time.Since(t0).Seconds()
	return result{seconds: s, check: done, expect: 2 * yields, nsPerOp: s * 1e9 / (2 * yields), rssPerTask: -1}
}

// semfan acquires inside the task (every waiter is a parked goroutine). semfanScope acquires
// before starting the goroutine, which is what errgroup's SetLimit does: Go's way to bound a
// group, and like max_concurrency it keeps unstarted work from holding a stack.
func semfan(limitSpawner bool) result {
	var counter int64
	sem := make(chan struct{}, semfanTokens)
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(semfanTasks)
	for i := 0; i < semfanTasks; i++ {
		if limitSpawner {
			sem <- struct{}{}
			go func() {
				runtime.Gosched()
				atomic.AddInt64(&counter, 1)
				<-sem
				wg.Done()
			}()
		} else {
			go func() {
				sem <- struct{}{}
				runtime.Gosched()
				atomic.AddInt64(&counter, 1)
				<-sem
				wg.Done()
			}()
		}
	}
	wg.Wait()
	s := time.Since(t0).Seconds()
	return result{seconds: s, check: counter, expect: semfanTasks, nsPerOp: -1, rssPerTask: -1}
}

func rssNow() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

func rssPeak() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Maxrss * 1024 // KiB on Linux
}

// park starts n goroutines that each wait for an hour or the context, whichever comes first,
// then cancels them. timeCancel picks what is reported: the cancel-to-join time (cancel) or
// the time to start and park them all (million).
func park(n int64, timeCancel bool) result {
	var parked, cancelled int64
	rssBefore := rssNow()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func() {
			defer wg.Done()
			// A timer that is stopped on cancel, as a sleeping weft task's timer is removed;
			// time.After would leave every timer alive for the hour.
			t := time.NewTimer(3600 * time.Second)
			defer t.Stop()
			atomic.AddInt64(&parked, 1)
			select {
			case <-ctx.Done():
				atomic.AddInt64(&cancelled, 1)
			case <-t.C:
			}
		}()
	}
	for atomic.LoadInt64(&parked) < n {
		runtime.Gosched()
	}
	for i := 0; i < 8; i++ {
		runtime.Gosched()
	}
	tParked := time.Since(t0).Seconds()
	rssPerTask := float64(rssPeak()-rssBefore) / float64(n)

	t1 := time.Now()
	cancel()
	wg.Wait()
	tCancel := time.Since(t1).Seconds()

	s := tParked
	if timeCancel {
		s = tCancel
	}
	return result{seconds: s, check: cancelled, expect: n, nsPerOp: -1, rssPerTask: rssPerTask}
}

// pingPong: two goroutines and two unbuffered channels (rendezvous), one each way.
func pingPong() result {
	ping, pong := make(chan int64), make(chan int64)
	var done int64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for x := range ping {
			pong <- x + 1
		}
	}()
	go func() {
		defer wg.Done()
		for i := int64(0); i < roundTrips; i++ {
			ping <- i
			if <-pong == i+1 {
				done++
			}
		}
		close(ping)
	}()
	wg.Wait()
	s := time.Since(t0).Seconds()
	return result{seconds: s, check: done, expect: roundTrips, nsPerOp: s * 1e9 / roundTrips, rssPerTask: -1}
}

// pipeline: source -> three stages (x+1) -> sink, each writer closing the channel it writes.
func pipeline() result {
	var chans [chanStages + 1]chan int64
	for i := range chans {
		chans[i] = make(chan int64, chanCapacity)
	}
	var sum int64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(chanStages + 2)
	go func() {
		defer wg.Done()
		for x := range chans[chanStages] {
			sum += x
		}
	}()
	for k := 0; k < chanStages; k++ {
		go func(in <-chan int64, out chan<- int64) {
			defer wg.Done()
			for x := range in {
				out <- x + 1
			}
			close(out)
		}(chans[k], chans[k+1])
	}
	go func() {
		defer wg.Done()
		for i := int64(0); i < chanItems; i++ {
			chans[0] <- i
		}
		close(chans[0])
	}()
	wg.Wait()
	s := time.Since(t0).Seconds()
	return result{seconds: s, check: sum, expect: itemsSum + chanStages*chanItems, nsPerOp: -1, rssPerTask: -1}
}

// fanout: one producer, one consumer (x+1) per GOMAXPROCS, one collector; the last consumer to
// end closes the results.
func fanout(consumers int) result {
	work, results := make(chan int64, chanCapacity), make(chan int64, chanCapacity)
	var sum int64
	var wg sync.WaitGroup
	live := int64(consumers)
	t0 := time.Now()
	wg.Add(consumers + 2)
	go func() {
		defer wg.Done()
		for x := range results {
			sum += x
		}
	}()
	for c := 0; c < consumers; c++ {
		go func() {
			defer wg.Done()
			for x := range work {
				results <- x + 1
			}
			if atomic.AddInt64(&live, -1) == 0 {
				close(results)
			}
		}()
	}
	go func() {
		defer wg.Done()
		for i := int64(0); i < chanItems; i++ {
			work <- i
		}
		close(work)
	}()
	wg.Wait()
	s := time.Since(t0).Seconds()
	return result{seconds: s, check: sum, expect: itemsSum + chanItems, nsPerOp: -1, rssPerTask: -1}
}

func main() {
	if len(os.Args) >= 2 && (os.Args[1] == "http" || os.Args[1] == "echo") {
		os.Exit(serve(os.Args[1], os.Args[2:])) // serve.go
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go_bench WORKLOAD THREADS")
		os.Exit(2)
	}
	wl := os.Args[1]
	threads, err := strconv.Atoi(os.Args[2])
	if err != nil || threads < 1 {
		fmt.Fprintln(os.Stderr, "go_bench: bad thread count", os.Args[2])
		os.Exit(2)
	}
	runtime.GOMAXPROCS(threads)

	var r result
	switch wl {
	case "fib":
		t0 := time.Now()
		v := fibTasks(fibN)
		r = result{time.Since(t0).Seconds(), int64(v), fibExpect, -1, -1}
	case "fib-serial":
		t0 := time.Now()
		v := fibPlain(fibN)
		r = result{time.Since(t0).Seconds(), int64(v), fibExpect, -1, -1}
	case "skynet":
		t0 := time.Now()
		v := skynet(0, skynetSize)
		r = result{time.Since(t0).Seconds(), v, skynetExpect, -1, -1}
	case "yield":
		r = yieldBench()
	case "semfan":
		r = semfan(false)
	case "semfan-scope":
		r = semfan(true)
	case "cancel":
		r = park(100000, true)
	case "million":
		r = park(1000000, false)
	case "chan-pingpong":
		r = pingPong()
	case "pipeline":
		r = pipeline()
	case "fanout":
		r = fanout(threads)
	default:
		// blocking: Go has no honest counterpart (a goroutine making a blocking syscall
		// already hands its P to another thread), so it prints nothing, like any workload
		// a peer cannot express.
		return
	}

	line := fmt.Sprintf("%s threads=%d seconds=%.6f check=%d", wl, threads, r.seconds, r.check)
	if r.nsPerOp >= 0 {
		line += fmt.Sprintf(" ns_per_op=%.1f", r.nsPerOp)
	}
	if r.rssPerTask >= 0 {
		line += fmt.Sprintf(" rss_per_task=%.0f", r.rssPerTask)
	}
	fmt.Println(line)
	if r.check != r.expect {
		fmt.Fprintf(os.Stderr, "go_bench: %s: check %d, expected %d\n", wl, r.check, r.expect)
		os.Exit(1)
	}
}
