//! Bounded Argon2 work: every password hash and check runs on one of a
//! fixed pair of worker threads behind a short queue.
//!
//! Each Argon2 computation holds 19 MiB. Unbounded, 60 parallel sign-ins
//! took the hub past 1.3 GB and 86 threads, enough to kill a Pi Zero.
//! Here at most [`WORKERS`] run at once, each with working memory that is
//! returned to the system when it ends (`auth::password`), and at most
//! [`QUEUE`] wait; beyond that the caller
//! gets [`Busy`] at once (the surfaces answer `503` with `Retry-After`).
//! Waiting holds no thread: the caller awaits a channel.

use std::sync::{Arc, Mutex, OnceLock, mpsc};

/// Argon2 computations at once (19 MiB each).
pub const WORKERS: usize = 2;
/// Computations waiting for a worker; more are refused.
pub const QUEUE: usize = 16;
/// What a refused caller is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

type Job = Box<dyn FnOnce() + Send>;

/// The queue is full (or the workers could not start): try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

fn queue() -> &'static mpsc::SyncSender<Job> {
    static QUEUE_TX: OnceLock<mpsc::SyncSender<Job>> = OnceLock::new();
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("hearth-argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job must not take the worker with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password worker thread: {e}");
            }
        }
        tx
    })
}

/// Runs `f` (Argon2 work) on a worker thread and waits for its result
/// without blocking the async thread. `Err(Busy)` at once when the queue
/// is full.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    submit(f)?.await.map_err(|_| Busy)
}

/// Queues `f` now; the receiver gets its result.
fn submit<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue()
        .try_send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| Busy)?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn at_most_two_run_and_an_overfull_queue_is_refused() {
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let mut results = Vec::new();
        let job = |r: Arc<Mutex<std::sync::mpsc::Receiver<()>>>| {
            move || {
                let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                MOST.fetch_max(now, Ordering::SeqCst);
                let _ = r.lock().map(|g| g.recv());
                RUNNING.fetch_sub(1, Ordering::SeqCst);
            }
        };
        for _ in 0..WORKERS {
            results.push(submit(job(Arc::clone(&release_rx))).expect("room"));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while RUNNING.load(Ordering::SeqCst) < WORKERS {
            assert!(
                std::time::Instant::now() < deadline,
                "the workers never started"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for _ in 0..QUEUE {
            results.push(submit(job(Arc::clone(&release_rx))).expect("room in the queue"));
        }
        assert_eq!(
            submit(|| ()).err(),
            Some(Busy),
            "the full queue refuses at once"
        );
        for _ in 0..(WORKERS + QUEUE) {
            let _ = release_tx.send(());
        }
        for rx in results {
            rx.await.expect("the job ran");
        }
        assert_eq!(MOST.load(Ordering::SeqCst), WORKERS);
        assert_eq!(run(|| 7).await, Ok(7), "the workers carry on");
    }
}
