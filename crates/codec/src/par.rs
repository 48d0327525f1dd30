//! A tiny work queue over `std::thread::scope`: whole tensors are independent jobs, handed out
//! largest first so two cores finish together.
use std::sync::Mutex;

/// Runs `f` on every job using up to `threads` threads; results come back in job order.
/// `cost` orders the queue (largest first).
pub(crate) fn run_jobs<J, R, F>(
    threads: usize,
    jobs: Vec<J>,
    cost: impl Fn(&J) -> usize,
    f: F,
) -> Vec<R>
where
    J: Send,
    R: Send,
    F: Fn(J) -> R + Sync,
{
    let n = jobs.len();
    let threads = threads.max(1).min(n.max(1));
    if threads <= 1 {
        return jobs.into_iter().map(f).collect();
    }
    let mut queue: Vec<(usize, J)> = jobs.into_iter().enumerate().collect();
    // Popped from the end: smallest first in the vector, so the largest job starts first.
    queue.sort_by_key(|(_, j)| cost(j));
    let queue = Mutex::new(queue);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let job = match queue.lock() {
                    Ok(mut q) => q.pop(),
                    Err(p) => p.into_inner().pop(),
                };
                let Some((i, job)) = job else { break };
                let r = f(job);
                match results.lock() {
                    Ok(mut v) => v[i] = Some(r),
                    Err(p) => p.into_inner()[i] = Some(r),
                }
            });
        }
    });
    let results = match results.into_inner() {
        Ok(v) => v,
        Err(p) => p.into_inner(),
    };
    // Every index was filled exactly once: the scope joined all workers, and a worker that
    // panicked re-raises the panic when the scope ends, before this line.
    results.into_iter().flatten().collect()
}
