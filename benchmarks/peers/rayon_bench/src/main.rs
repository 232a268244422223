// SPDX-License-Identifier: MIT
//! rayon_bench WORKLOAD THREADS — the rayon peer of weft_bench (benchmarks/README.md).
//!
//! Every workload runs inside a `rayon::ThreadPool` of THREADS threads (`install`), timed from
//! inside it, as oneTBB's are timed inside its arena. fib is `rayon::join` at every call, skynet
//! a `rayon::scope` with ten `spawn`s per inner call, pfor a parallel reduce whose pieces rayon
//! cuts by itself. rayon has no task that parks in a sleep or on a semaphore, no channels and no
//! pool for blocking calls, so it prints nothing for the other workloads.

use std::process::ExitCode;
use std::time::Instant;

const FIB_N: i64 = 30;
const FIB_EXPECT: i64 = 832040;
const SKYNET_SIZE: i64 = 1_000_000;
const SKYNET_EXPECT: i64 = 499_999_500_000;
const PFOR_N: i64 = 100_000_000;
const PFOR_EXPECT: i64 = 666_666_662; // round(sum / 1000), as in weft_bench

// The child is the closure rayon leaves in the deque for a thief (the second); the first runs at
// once on this thread. So fib(n-1) is the spawned child and fib(n-2) the plain call, as in
// weft_bench and the other peers. A child nobody stole is run inline by the join.
fn fib_tasks(n: i64) -> i64 {
    if n < 2 {
        return n;
    }
    let (y, x) = rayon::join(|| fib_tasks(n - 2), || fib_tasks(n - 1));
    x + y
}

// Not inlined: the same call tree as the task version, as in weft_bench's fib-serial.
#[inline(never)]
fn fib_plain(n: i64) -> i64 {
    if n < 2 {
        return n;
    }
    fib_plain(n - 1) + fib_plain(n - 2)
}

// Ten children spawned into one scope, which joins them before it returns: the contract's shape.
// Nested joins would be rayon's cheaper idiom, but a binary tree is not the workload.
fn skynet(num: i64, size: i64) -> i64 {
    if size == 1 {
        return num;
    }
    let step = size / 10;
    let mut kids = [0i64; 10];
    rayon::scope(|s| {
        for (i, kid) in kids.iter_mut().enumerate() {
            s.spawn(move |_| *kid = skynet(num + i as i64 * step, step));
        }
    });
    kids.iter().sum()
}

// Not inlined: the parallel pieces and the serial floor run the same machine code.
#[inline(never)]
fn sqrt_sum(begin: i64, end: i64) -> f64 {
    let mut s = 0.0;
    let mut i = begin;
    while i < end {
        s += (i as f64).sqrt();
        i += 1;
    }
    s
}

// rayon::iter::split cuts the range in halves for as long as rayon's own splitter asks for
// more pieces (it adapts to the workers and to steals): the grain is left to rayon.
fn sqrt_reduce(n: i64) -> f64 {
    use rayon::iter::ParallelIterator;
    rayon::iter::split((0, n), |(b, e)| {
        if e - b < 2 {
            return ((b, e), None);
        }
        let mid = b + (e - b) / 2;
        ((b, mid), Some((mid, e)))
    })
    .map(|(b, e)| sqrt_sum(b, e))
    .sum()
}

// The compiler must know neither the argument nor the result.
fn opaque(v: i64) -> i64 {
    let cell = v;
    unsafe { std::ptr::read_volatile(&cell) }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: rayon_bench WORKLOAD THREADS");
        return ExitCode::from(2);
    }
    let wl = args[1].as_str();
    let threads: usize = match args[2].parse() {
        Ok(t) if t >= 1 => t,
        _ => {
            eprintln!("rayon_bench: bad thread count {}", args[2]);
            return ExitCode::from(2);
        }
    };
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rayon_bench: thread pool of {}: {}", threads, e);
            return ExitCode::from(1);
        }
    };

    let (check, expect, seconds) = match wl {
        "fib" => pool.install(|| {
            let t0 = Instant::now();
            let v = fib_tasks(FIB_N);
            (v, FIB_EXPECT, t0.elapsed().as_secs_f64())
        }),
        "fib-serial" => {
            let n = opaque(FIB_N);
            let t0 = Instant::now();
            let v = fib_plain(n);
            (v, FIB_EXPECT, t0.elapsed().as_secs_f64())
        }
        "skynet" => pool.install(|| {
            let t0 = Instant::now();
            let v = skynet(0, SKYNET_SIZE);
            (v, SKYNET_EXPECT, t0.elapsed().as_secs_f64())
        }),
        "pfor" => pool.install(|| {
            // Every worker has run a job before the interval: weft's workers are started
            // before its interval too.
            pool.broadcast(|_| {});
            let t0 = Instant::now();
            let sum = sqrt_reduce(PFOR_N);
            let secs = t0.elapsed().as_secs_f64();
            ((sum / 1000.0).round() as i64, PFOR_EXPECT, secs)
        }),
        "pfor-serial" => {
            let n = opaque(PFOR_N);
            let t0 = Instant::now();
            let sum = sqrt_sum(0, n);
            let secs = t0.elapsed().as_secs_f64();
            ((sum / 1000.0).round() as i64, PFOR_EXPECT, secs)
        }
        _ => return ExitCode::SUCCESS, // not expressible here: print nothing, the table says n/a
    };

    println!("{} threads={} seconds={:.6} check={}", wl, threads, seconds, check);
    if check != expect {
        eprintln!("rayon_bench: {}: check {}, expected {}", wl, check, expect);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
