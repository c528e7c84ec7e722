//! A value that one side publishes and others wait on: the latest state, not a queue.
//!
//! The cursor is the user: the worker publishes its cursor state after every cursor command,
//! and each cursor client wakes when it changes and sends what is new since it last looked.
//! Intermediate states a slow reader missed are not kept, which is what the cursor wants: a
//! client behind by ten moves needs only the last position.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The latest published value and a condition variable to wait for the next one.
#[derive(Debug, Default)]
pub struct Watch<T> {
    value: Mutex<T>,
    changed: Condvar,
}

impl<T: Clone> Watch<T> {
    /// A watch holding `value`.
    pub fn new(value: T) -> Self {
        Watch {
            value: Mutex::new(value),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        // A panicking publisher leaves a whole value behind (it is replaced in one store).
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the value and wakes every waiter.
    pub fn publish(&self, value: T) {
        *self.lock() = value;
        self.changed.notify_all();
    }

    /// A copy of the current value.
    pub fn latest(&self) -> T {
        self.lock().clone()
    }

    /// Waits until `ready` holds for the value, or `timeout` has passed; returns a copy of the
    /// value either way (the caller checks it again, as after a timeout it may not be ready).
    pub fn wait_until(&self, timeout: Duration, ready: impl Fn(&T) -> bool) -> T {
        let deadline = Instant::now() + timeout;
        let mut value = self.lock();
        while !ready(&value) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            value = self
                .changed
                .wait_timeout(value, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_waiter_wakes_on_publish_and_times_out_without() {
        let w = Arc::new(Watch::new(0u32));
        let start = Instant::now();
        assert_eq!(w.wait_until(Duration::from_millis(30), |v| *v > 0), 0);
        assert!(start.elapsed() >= Duration::from_millis(30));
        // Already ready: no wait at all.
        w.publish(1);
        assert_eq!(w.wait_until(Duration::from_secs(60), |v| *v > 0), 1);
        let publisher = {
            let w = w.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(20));
                w.publish(2);
                w.publish(3);
            })
        };
        let start = Instant::now();
        let got = w.wait_until(Duration::from_secs(60), |v| *v >= 2);
        assert!(got >= 2, "{got}");
        assert!(start.elapsed() < Duration::from_secs(30));
        publisher.join().unwrap();
        assert_eq!(w.latest(), 3);
    }
}
