//! The real executor: a node as an OS process on the OS clock. The driver and the model run on
//! this thread (model actions one at a time, in order); I/O actions go to a communication
//! thread, whose results come back in the order they finish. Between two inner steps the
//! driver sees whatever finished meanwhile, so an outer step can land mid-window.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use covenant_core::driver::{Action, Input, NodeEvent, Output};

use crate::exec::{io, Shared};
use crate::setup::{self, Node, NodeOptions, Role};

/// Longest wait for the communication thread to finish its queue after the node stops.
const DRAIN: Duration = Duration::from_secs(60);

/// `covenant miner` / `covenant validator`: opens the node and runs it until it stops.
pub fn run(opts: NodeOptions, role: Role) -> Result<()> {
    let opened = setup::open(&opts, role)?;
    let r = drive(opened.node);
    drop(opened.rt);
    r
}

/// Runs a node until its driver stops.
pub fn drive(node: Node) -> Result<()> {
    let Node {
        mut driver,
        mut compute,
        shared,
    } = node;
    let (io_tx, io_rx) = mpsc::channel::<Action>();
    let (done_tx, done_rx) = mpsc::channel::<Input>();
    let comm = {
        let shared: Arc<Shared> = shared.clone();
        std::thread::Builder::new()
            .name("comm".into())
            .spawn(move || {
                for a in io_rx {
                    if done_tx.send(io::run(&shared, a)).is_err() {
                        return;
                    }
                }
            })
            .context("starting the communication thread")?
    };
    let mut queue: VecDeque<Input> = VecDeque::from([Input::Start]);
    loop {
        while let Ok(i) = done_rx.try_recv() {
            queue.push_back(i);
        }
        let now = shared.now();
        let due = driver.poll_timeout().is_some_and(|t| t <= now);
        let input = match (due, queue.pop_front()) {
            (true, i) => {
                if let Some(i) = i {
                    queue.push_front(i);
                }
                Input::Tick
            }
            (false, Some(i)) => i,
            (false, None) => {
                let wait = driver
                    .poll_timeout()
                    .map_or(Duration::from_secs(3600), |t| {
                        Duration::from_millis(t - now)
                    });
                match done_rx.recv_timeout(wait) {
                    Ok(i) => i,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => {
                        anyhow::bail!("the communication thread stopped")
                    }
                }
            }
        };
        let now = shared.now();
        for out in driver.handle(now, input) {
            match out {
                Output::Emit(ev) => shared.env.sink.emit(now, &ev),
                Output::Do(a) if a.is_compute() => queue.push_back(compute.run(a)),
                Output::Do(a) => {
                    if io_tx.send(a).is_err() {
                        anyhow::bail!("the communication thread stopped");
                    }
                }
                Output::Stop => {
                    if let Some(peak_rss) = crate::env::peak_rss() {
                        shared.env.sink.emit(now, &NodeEvent::Memory { peak_rss });
                    }
                    drop(io_tx);
                    finish(comm);
                    return Ok(());
                }
            }
        }
    }
}

/// Lets the communication thread finish what it was asked (the last record, the last upload).
fn finish(comm: std::thread::JoinHandle<()>) {
    let t = std::time::Instant::now();
    while !comm.is_finished() && t.elapsed() < DRAIN {
        std::thread::sleep(Duration::from_millis(20));
    }
    if comm.is_finished() {
        let _ = comm.join();
    }
}
