//! The thread `/ws/live` clients run on: one tokio runtime at the lowest CPU priority.
//!
//! Storing readings and acking devices always come first. On a box with CPU to spare the live
//! thread runs as soon as an event is published (the latency bench measures it), but when
//! ingest takes every core the kernel gives this thread only what is left, the clients fall
//! behind the ring and get `lagged` notices, and ingest keeps its pace.
//!
//! A client's socket stays registered with the main runtime's I/O driver (tokio wakes a task
//! on any runtime); only the work of filtering, framing and writing events moves here.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// Owns the thread; the runtime stops (its remaining tasks dropped) when the last clone of
/// the [`LiveRuntime`] goes.
#[derive(Clone)]
pub struct LiveRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl LiveRuntime {
    /// Start the thread.
    pub fn start() -> std::io::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("live-clients".into())
            .spawn(move || {
                crate::priority::lowest();
                let runtime = match Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the live-clients thread did not start"))??;
        Ok(Self {
            inner: Arc::new(Inner {
                handle,
                stop: Some(stop),
            }),
        })
    }

    /// Run `task` on the live thread.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.handle.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The property the live design rests on: client work yields to ingest.
    #[cfg(target_os = "linux")]
    #[test]
    fn clients_run_at_the_lowest_cpu_priority() {
        let rt = LiveRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(crate::priority::current());
        });
        let nice = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(nice, 19, "the live thread runs at nice 19");
    }

    #[test]
    fn runs_tasks_and_stops_when_dropped() {
        let rt = LiveRuntime::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let _ = tx.send(std::thread::current().name().map(String::from));
        });
        let name = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(name.as_deref(), Some("live-clients"));
        drop(rt);
    }
}
