//! The background loops of `serve` (imports, deliveries, watched folders), each stoppable.
//!
//! A loop that outlived its database kept reconnecting until the process exited, and libpq
//! connecting during exit aborts the process (krb5's mutexes are already destroyed). So a
//! loop ends when its `Worker` is stopped or dropped.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running background loop; dropping it asks the loop to end after its current step.
pub struct Worker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Runs `step` again and again on a thread named `name`, pausing for as long as each step
    /// returns (no pause when it returns zero) until the worker is stopped.
    pub fn spawn(
        name: &str,
        mut step: impl FnMut() -> Duration + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || loop {
                let pause = step();
                match stopped.recv_timeout(pause) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })?;
        Ok(Worker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Asks the loop to end and waits until its current step has finished.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a background worker panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping the sender disconnects the channel: the loop ends after its current step
        // (a running import is resumed from its last chunk at the next start).
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_stopped_worker_runs_no_further_step() {
        let steps = Arc::new(AtomicUsize::new(0));
        let counted = steps.clone();
        let worker = Worker::spawn("test-worker", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Duration::from_millis(1)
        })
        .expect("spawn");
        while steps.load(Ordering::SeqCst) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.stop();
        let after = steps.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(steps.load(Ordering::SeqCst), after);
    }
}
