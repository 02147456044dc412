//! The communication port's message hand-off between `FltSendMessage` and the simulated client.
//!
//! A message is either taken by the client or withdrawn by the sender at its timeout, never both:
//! that is what makes "timed out" mean "not delivered", as with the real port for messages that
//! expect no reply.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One message in flight.
pub struct Pending {
    pub id: u64,
    pub bytes: Vec<u8>,
    /// The sender's reply buffer size (`*ReplyLength` of `FltSendMessage`); 0 = no reply.
    pub reply_capacity: u32,
}

#[derive(Default)]
struct State {
    connected: bool,
    /// The client port handle the driver was given at connect.
    client_port: isize,
    slot: Option<Pending>,
    next_id: u64,
    taken: Option<u64>,
    /// The id of the last message the client took (ids are taken in increasing order).
    last_taken: u64,
    reply: Option<(u64, Vec<u8>)>,
    /// The message whose sender still waits for a reply (`FilterReplyMessage` to any other id
    /// finds no waiter).
    awaiting_reply: Option<u64>,
    /// Bumped at every disconnect so a waiting sender notices.
    epoch: u64,
    shutdown: bool,
    /// Senders take the slot in the order they asked for it, as messages queue on a real port:
    /// without this a sender that loops (the delivery worker) could take the slot every time it
    /// frees, and another sender (an injected message) would wait out its timeout.
    next_ticket: u64,
    serving: u64,
    /// Tickets whose sender gave up before its turn: skipped when their turn comes.
    abandoned: Vec<u64>,
}

impl State {
    /// The sender holding `ticket` no longer waits for the slot (it took it, or gave up).
    fn done_waiting(&mut self, ticket: u64) {
        if self.serving == ticket {
            self.serving += 1;
            while let Some(i) = self.abandoned.iter().position(|&t| t == self.serving) {
                self.abandoned.swap_remove(i);
                self.serving += 1;
            }
        } else {
            self.abandoned.push(ticket);
        }
    }
}

/// How `send` ended.
pub enum SendResult {
    Delivered(Option<Vec<u8>>),
    /// No reply in time; `taken`: the client took the message (it waited for a reply that did
    /// not come), else it was withdrawn, never delivered.
    TimedOut {
        taken: bool,
    },
    /// The client went away; `taken` as for `TimedOut`.
    Disconnected {
        taken: bool,
    },
}

pub struct Port {
    state: Mutex<State>,
    cv: Condvar,
}

pub static PORT: Port = Port {
    state: Mutex::new(State {
        connected: false,
        client_port: 0,
        slot: None,
        next_id: 0,
        taken: None,
        last_taken: 0,
        reply: None,
        awaiting_reply: None,
        epoch: 0,
        shutdown: false,
        next_ticket: 0,
        serving: 0,
        abandoned: Vec::new(),
    }),
    cv: Condvar::new(),
};

impl Port {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn reset(&self) {
        *self.lock() = State::default();
        self.cv.notify_all();
    }

    pub fn set_connected(&self, client_port: isize) {
        let mut s = self.lock();
        s.connected = true;
        s.client_port = client_port;
        self.cv.notify_all();
    }

    /// The client went away: withdraw any pending message.
    pub fn set_disconnected(&self) {
        let mut s = self.lock();
        s.connected = false;
        s.client_port = 0;
        s.slot = None;
        s.epoch += 1;
        self.cv.notify_all();
    }

    pub fn client_port(&self) -> isize {
        self.lock().client_port
    }

    pub fn is_connected(&self) -> bool {
        self.lock().connected
    }

    /// Stops every waiter (end of run).
    pub fn shutdown(&self) {
        let mut s = self.lock();
        s.shutdown = true;
        s.slot = None;
        self.cv.notify_all();
    }

    /// Offers a message; waits until the client takes it (and replies, if `reply_capacity` is
    /// not 0) or `timeout`. `reply_capacity` is the sender's reply buffer size, which the
    /// user-mode side sees as `FILTER_MESSAGE_HEADER.ReplyLength`.
    pub fn send_with_reply_buffer(
        &self,
        bytes: Vec<u8>,
        reply_capacity: u32,
        timeout: Duration,
    ) -> SendResult {
        let result = self.send_inner(bytes, reply_capacity, timeout);
        self.lock().awaiting_reply = None;
        self.cv.notify_all();
        result
    }

    fn send_inner(&self, bytes: Vec<u8>, reply_capacity: u32, timeout: Duration) -> SendResult {
        let wants_reply = reply_capacity != 0;
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        if !s.connected {
            return SendResult::Disconnected { taken: false };
        }
        let epoch = s.epoch;
        // One message at a time: wait for the slot, in turn.
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        while s.slot.is_some() || s.serving != ticket {
            let now = Instant::now();
            if now >= deadline || s.shutdown {
                s.done_waiting(ticket);
                self.cv.notify_all();
                return SendResult::TimedOut { taken: false };
            }
            s = match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            if s.epoch != epoch || !s.connected {
                s.done_waiting(ticket);
                self.cv.notify_all();
                return SendResult::Disconnected { taken: false };
            }
        }
        s.done_waiting(ticket);
        s.next_id += 1;
        let id = s.next_id;
        s.slot = Some(Pending {
            id,
            bytes,
            reply_capacity,
        });
        s.reply = None;
        s.awaiting_reply = wants_reply.then_some(id);
        self.cv.notify_all();
        loop {
            // A reply that arrived counts even if the client disconnected right after it.
            let taken = s.taken == Some(id);
            if taken && !wants_reply {
                return SendResult::Delivered(None);
            }
            if taken && s.reply.as_ref().is_some_and(|(rid, _)| *rid == id) {
                return SendResult::Delivered(s.reply.take().map(|(_, r)| r));
            }
            if s.epoch != epoch {
                return SendResult::Disconnected {
                    taken: s.last_taken >= id,
                };
            }
            let now = Instant::now();
            if now >= deadline || s.shutdown {
                if s.slot.as_ref().is_some_and(|p| p.id == id) {
                    s.slot = None; // withdrawn: never delivered
                }
                return SendResult::TimedOut {
                    taken: s.last_taken >= id,
                };
            }
            s = match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The client takes the next message, waiting up to `timeout`.
    pub fn take(&self, timeout: Duration) -> Option<Pending> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if !s.connected || s.shutdown {
                return None;
            }
            if let Some(p) = s.slot.take() {
                s.taken = Some(p.id);
                s.last_taken = p.id;
                self.cv.notify_all();
                return Some(p);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            s = match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The client replies to message `id`.
    pub fn reply(&self, id: u64, bytes: Vec<u8>) {
        let mut s = self.lock();
        s.reply = Some((id, bytes));
        self.cv.notify_all();
    }

    /// Waits up to `timeout` until a message is offered (or the port is gone); takes nothing.
    pub fn wait_offered(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if s.slot.is_some() {
                return true;
            }
            let now = Instant::now();
            if !s.connected || s.shutdown || now >= deadline {
                return false;
            }
            s = match self.cv.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The client replies to message `id` if its sender still waits; `false`: nobody waits.
    pub fn reply_if_waiting(&self, id: u64, bytes: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.awaiting_reply != Some(id) || s.taken != Some(id) {
            return false;
        }
        s.reply = Some((id, bytes));
        self.cv.notify_all();
        true
    }
}
