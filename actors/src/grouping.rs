//! Requests of one kind gathered into groups that run as one backend call
//! (one statement on PostgreSQL), with a bounded number of groups in flight.
//!
//! Used by the block actor (creates and reads), the vlob actor (reads) and
//! the user actor (handshake lookups). [`Grouping`] keeps the queue, the
//! count of running groups and the timer of a group waiting for company;
//! [`start_counted`] runs the groups that only a count bounds. Block creates,
//! bounded by bytes and block ids too, run their own.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

/// Requests of one kind waiting for a free group slot, and the number of
/// groups running.
pub(crate) struct Grouping<T, R> {
    queue: VecDeque<(T, oneshot::Sender<R>)>,
    /// Most groups running at once.
    in_flight: usize,
    running: usize,
    /// The timer of a group waiting for company (see [`Grouping::holds`]).
    linger: Option<SpawnHandle>,
    /// That timer went off: the next group starts with what is queued.
    lingered: bool,
}

impl<T, R> Grouping<T, R> {
    pub(crate) fn new(in_flight: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            in_flight,
            running: 0,
            linger: None,
            lingered: false,
        }
    }

    /// Whether a slot is free for another group.
    pub(crate) fn has_slot(&self) -> bool {
        self.running < self.in_flight
    }

    /// Whether the next group should wait: another group runs and fewer
    /// than `min` requests are queued. Arms a timer of `linger` that ends
    /// the wait (`expire` must call [`Grouping::lingered`] and start groups
    /// again).
    pub(crate) fn holds<A>(
        &mut self,
        ctx: &mut Context<A>,
        min: usize,
        linger: Duration,
        expire: fn(&mut A, &mut Context<A>),
    ) -> bool
    where
        A: Actor<Context = Context<A>>,
    {
        if self.running == 0 || self.queue.len() >= min || self.lingered {
            if let Some(timer) = self.linger.take() {
                ctx.cancel_future(timer);
            }
            self.lingered = false;
            return false;
        }
        if self.linger.is_none() && !self.queue.is_empty() {
            self.linger = Some(ctx.run_later(linger, expire));
        }
        true
    }

    /// The linger timer went off.
    pub(crate) fn lingered(&mut self) {
        (self.linger, self.lingered) = (None, true);
    }

    /// Queues a request; the receiver gets its outcome.
    pub(crate) fn push(&mut self, request: T) -> oneshot::Receiver<R> {
        let (reply, outcome) = oneshot::channel();
        self.queue.push_back((request, reply));
        outcome
    }

    /// The next group to run, if a slot is free: the queue in arrival
    /// order, as long as `admit` takes the next request (the first one goes
    /// in any case). The group counts as running until [`Grouping::done`].
    pub(crate) fn next(&mut self, mut admit: impl FnMut(&T) -> bool) -> Option<(Vec<T>, Vec<oneshot::Sender<R>>)> {
        if !self.has_slot() {
            return None;
        }
        let (first, reply) = self.queue.pop_front()?;
        admit(&first);
        let (mut group, mut replies) = (vec![first], vec![reply]);
        while let Some((next, _)) = self.queue.front()
            && admit(next)
            && let Some((request, reply)) = self.queue.pop_front()
        {
            group.push(request);
            replies.push(reply);
        }
        self.running += 1;
        Some((group, replies))
    }

    /// A group given by [`Grouping::next`] ended.
    pub(crate) fn done(&mut self) {
        self.running = self.running.saturating_sub(1);
    }
}

/// Hands each requester its outcome, in order; `missing` stands for the
/// outcomes a group failed to give.
pub(crate) fn answer<R>(replies: Vec<oneshot::Sender<R>>, outcomes: Vec<R>, missing: impl Fn() -> R) {
    let mut outcomes = outcomes.into_iter();
    for reply in replies {
        // The requester may be gone (connection closed): nothing to do.
        let _ = reply.send(outcomes.next().unwrap_or_else(&missing));
    }
}

/// How an actor runs groups of one kind that only a count bounds: where its
/// [`Grouping`] is, the most requests in a group, the backend call, and the
/// outcome of a request the call failed to answer.
pub(crate) struct Counted<A, T, R> {
    pub max: usize,
    pub grouping: fn(&mut A) -> Option<&mut Grouping<T, R>>,
    pub run: fn(&A, Vec<T>) -> futures_util::future::LocalBoxFuture<'static, Vec<R>>,
    pub missing: fn() -> R,
}

impl<A, T, R> Clone for Counted<A, T, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, T, R> Copy for Counted<A, T, R> {}

/// Starts groups while slots are free: arrival order, at most `how.max`
/// each. When a group ends, its requesters get their outcomes and the next
/// groups start.
pub(crate) fn start_counted<A, T, R>(act: &mut A, ctx: &mut Context<A>, how: Counted<A, T, R>)
where
    A: Actor<Context = Context<A>>,
    T: 'static,
    R: 'static,
{
    loop {
        let mut count = 0;
        let admit = |_: &T| {
            count += 1;
            count <= how.max
        };
        let Some((group, replies)) = (how.grouping)(act).and_then(|g| g.next(admit)) else {
            return;
        };
        let run = (how.run)(act, group);
        ctx.spawn(run.into_actor(act).map(move |outcomes, act, ctx| {
            answer(replies, outcomes, how.missing);
            if let Some(g) = (how.grouping)(act) {
                g.done();
            }
            start_counted(act, ctx, how);
        }));
    }
}
