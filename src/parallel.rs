//! Fan-out on scoped threads, with one panic policy for the whole crate: a panic in a
//! worker is propagated to the caller, never turned into a value. A panicking
//! compression thread must not become an empty `Packages.gz` that is then signed and
//! published, nor a reader's panic a "corrupt remote" (docs/ARCHITECTURE.md,
//! "Layers": every layer may use this module).

use std::sync::Mutex;

/// Runs `a` and `b` at once and returns both results.
pub fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let second = scope.spawn(b);
        let first = a();
        (first, rethrow(second.join()))
    })
}

/// Runs `a` and `b` at once, like [`join`], `b` on a thread that yields to the others
/// of this process: on Linux its nice value is raised by [`YIELDING_NICE`], and the
/// threads it spawns (compression's, say) inherit it. `a` issues requests, `b`
/// computes: on a machine of two cores, `b`'s threads took the cores and `a`'s
/// requests went out up to 10 ms after they were made; with a core free, `b` runs as
/// fast as before (docs/ARCHITECTURE.md, "Publishing at the cost of what changed").
pub fn join_yielding<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    join(a, || {
        yield_to_the_others();
        b()
    })
}

/// How much lower the priority of [`join_yielding`]'s computing thread is: CFS weighs
/// nice 0 against nice 5 about 3 to 1, enough for a woken request thread to run at
/// once, and little enough that another process's load does not starve the work.
pub const YIELDING_NICE: i32 = 5;

/// Lowers this thread's priority by [`YIELDING_NICE`] (Linux sets it per thread).
/// A failure leaves it as it was: it only costs latency.
fn yield_to_the_others() {
    #[cfg(target_os = "linux")]
    {
        if let Ok(current) = rustix::process::getpriority_process(None) {
            let _ = rustix::process::setpriority_process(None, current + YIELDING_NICE);
        }
    }
}

/// `work` on every item, `jobs` at a time (at least one), the results in the order of
/// `items`.
pub fn map<T: Sync, R: Send>(items: &[T], jobs: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let jobs = jobs.max(1).min(items.len());
    if jobs <= 1 {
        return items.iter().map(work).collect();
    }
    let next = Mutex::new(0usize);
    let take = || {
        let mut next = next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = *next;
        *next += 1;
        (index < items.len()).then_some(index)
    };
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while let Some(index) = take() {
                        mine.push((index, work(&items[index])));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| rethrow(worker.join()))
            .collect()
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// `work` on every item, `jobs` at a time, stopping at the first error: the items not
/// started yet are skipped, and that error is returned. Otherwise the results in the
/// order of `items`.
pub fn try_map<T: Sync, R: Send, E: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results = map(items, jobs, |item| {
        if failed.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let result = work(item);
        if result.is_err() {
            failed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Some(result)
    });
    let mut ok = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results.into_iter().flatten() {
        match result {
            Ok(value) => ok.push(value),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(ok),
    }
}

fn rethrow<R>(joined: std::thread::Result<R>) -> R {
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Frees `value` on a thread of its own, not joined: a structure of tens of thousands
/// of small allocations takes milliseconds to free, which the caller's next request
/// need not wait for. At exit its memory goes with the process. Should no thread
/// start, it is freed here.
pub fn drop_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("drop".into())
        .spawn(move || {
            yield_to_the_others();
            drop(value)
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn map_keeps_the_order_of_the_items_at_any_width() {
        let items: Vec<u32> = (0..100).collect();
        for jobs in [0, 1, 2, 8, 200] {
            assert_eq!(
                map(&items, jobs, |x| x * 2),
                (0..100).map(|x| x * 2).collect::<Vec<_>>()
            );
        }
        assert!(map(&[] as &[u32], 4, |x| *x).is_empty());
    }

    #[test]
    fn map_runs_no_more_than_jobs_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items = vec![(); 40];
        map(&items, 3, |_| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(most.load(Ordering::SeqCst) >= 2, "ran one at a time");
    }

    #[test]
    #[should_panic(expected = "compressor failed")]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let items = vec![1, 2, 3, 4];
        let _ = map(&items, 4, |x| {
            if *x == 3 {
                panic!("compressor failed");
            }
            vec![0u8; *x]
        });
    }

    #[test]
    #[should_panic(expected = "reader failed")]
    fn a_panic_in_the_second_half_of_a_join_reaches_the_caller() {
        let _ = join(|| 1, || -> u32 { panic!("reader failed") });
    }

    #[test]
    fn try_map_returns_the_first_error_and_stops_starting_work() {
        let started = AtomicUsize::new(0);
        let items: Vec<u32> = (0..1000).collect();
        let result: Result<Vec<u32>, String> = try_map(&items, 1, |x| {
            started.fetch_add(1, Ordering::SeqCst);
            if *x == 5 {
                Err(format!("item {x}"))
            } else {
                Ok(*x)
            }
        });
        assert_eq!(result, Err("item 5".to_owned()));
        assert_eq!(started.load(Ordering::SeqCst), 6);
        let all: Result<Vec<u32>, String> = try_map(&items, 8, |x| Ok(*x));
        assert_eq!(all, Ok(items.clone()));
    }
}
