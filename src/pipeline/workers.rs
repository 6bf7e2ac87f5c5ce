//! Threads that run the model on frames in flight while the run loop reads, pre-processes,
//! decodes and emits: whole frames on several cores, the records still in frame order (the
//! loop finishes frames by number, whichever thread ends first).
//!
//! With one lane there are no threads: a frame's model runs on the loop's thread as soon as it
//! is handed over, which keeps a one-core run exactly as it was.

use super::{PipelineError, Started};
use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Runs [`Started::infer`] on frames handed over, on `threads` threads or inline.
pub(super) struct Workers {
    /// Frames for the threads; `None` inline.
    jobs: Option<mpsc::Sender<Started>>,
    done: mpsc::Receiver<Started>,
    threads: Vec<JoinHandle<()>>,
    /// Frames run inline, not taken yet.
    ran: VecDeque<Started>,
}

impl Workers {
    /// `threads` threads, or none (the model runs on the caller's thread) for 0 or 1.
    pub(super) fn start(threads: usize) -> Result<Self, PipelineError> {
        let (done_tx, done) = mpsc::channel::<Started>();
        if threads <= 1 {
            return Ok(Self {
                jobs: None,
                done,
                threads: Vec::new(),
                ran: VecDeque::new(),
            });
        }
        let (jobs, queue) = mpsc::channel::<Started>();
        let queue = Arc::new(Mutex::new(queue));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let (queue, done_tx) = (Arc::clone(&queue), done_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("lookout-worker-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next frame, not while the
                    // model runs.
                    let next = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut started) = next else { return };
                    started.infer();
                    if done_tx.send(started).is_err() {
                        return;
                    }
                })
                .map_err(|e| PipelineError::Workers {
                    threads,
                    message: e.to_string(),
                })?;
            handles.push(handle);
        }
        Ok(Self {
            jobs: Some(jobs),
            done,
            threads: handles,
            ran: VecDeque::new(),
        })
    }

    /// Hands a frame over to have its model run.
    pub(super) fn submit(&mut self, mut started: Started) -> Result<(), PipelineError> {
        match &self.jobs {
            None => {
                started.infer();
                self.ran.push_back(started);
                Ok(())
            }
            Some(jobs) => jobs.send(started).map_err(|_| self.lost()),
        }
    }

    /// A frame whose model has run, if one is ready now.
    pub(super) fn try_take(&mut self) -> Option<Started> {
        self.ran.pop_front().or_else(|| self.done.try_recv().ok())
    }

    /// Waits up to `timeout` for a frame whose model has run. An error when a thread has
    /// died, which would otherwise leave its frame waited for forever.
    pub(super) fn take(&mut self, timeout: Duration) -> Result<Option<Started>, PipelineError> {
        if let Some(started) = self.ran.pop_front() {
            return Ok(Some(started));
        }
        if self.jobs.is_none() {
            return Ok(None);
        }
        match self.done.recv_timeout(timeout) {
            Ok(started) => Ok(Some(started)),
            Err(mpsc::RecvTimeoutError::Timeout) if !self.any_died() => Ok(None),
            Err(_) => Err(self.lost()),
        }
    }

    /// Whether models run on the caller's thread (one lane).
    pub(super) fn inline(&self) -> bool {
        self.jobs.is_none()
    }

    fn any_died(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    fn lost(&self) -> PipelineError {
        PipelineError::Workers {
            threads: self.threads.len(),
            message: "a worker thread stopped".into(),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends every thread after the frame it is running.
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}
