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

/// The requesters of a running group. Each is answered once, as soon as its
/// outcome is known: a group statement hands its rows over one at a time,
/// and a requester need not wait for the rows of the others. Those still
/// unanswered when the group ends (it is dropped) get `missing`.
pub struct Replies<R> {
    senders: Vec<Option<oneshot::Sender<R>>>,
    missing: fn() -> R,
}

impl<R> Replies<R> {
    pub(crate) fn new(senders: Vec<oneshot::Sender<R>>, missing: fn() -> R) -> Self {
        Self {
            senders: senders.into_iter().map(Some).collect(),
            missing,
        }
    }

    /// Answers the `i`-th request of the group (counting from 0), unless it
    /// was answered already.
    pub fn send(&mut self, i: usize, outcome: R) {
        if let Some(sender) = self.senders.get_mut(i).and_then(Option::take) {
            // The requester may be gone (connection closed): nothing to do.
            let _ = sender.send(outcome);
        }
    }

    /// Answers the requests in order, from the first.
    pub fn send_all(&mut self, outcomes: impl IntoIterator<Item = R>) {
        for (i, outcome) in outcomes.into_iter().enumerate() {
            self.send(i, outcome);
        }
    }

    /// The requests not answered yet (counting from 0).
    pub fn unanswered(&self) -> Vec<usize> {
        (self.senders.iter().enumerate())
            .filter_map(|(i, s)| s.is_some().then_some(i))
            .collect()
    }
}

impl<R> Drop for Replies<R> {
    fn drop(&mut self) {
        for sender in self.senders.iter_mut().filter_map(Option::take) {
            let _ = sender.send((self.missing)());
        }
    }
}

/// How an actor runs groups of one kind that only a count bounds: where its
/// [`Grouping`] is, the most requests in a group, the backend call (which
/// answers the requesters), and the outcome of a request the call failed to
/// answer.
pub(crate) struct Counted<A, T, R> {
    pub max: usize,
    pub grouping: fn(&mut A) -> Option<&mut Grouping<T, R>>,
    pub run: fn(&A, Vec<T>, Replies<R>) -> futures_util::future::LocalBoxFuture<'static, ()>,
    pub missing: fn() -> R,
}

impl<A, T, R> Clone for Counted<A, T, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, T, R> Copy for Counted<A, T, R> {}

/// Starts groups while slots are free: arrival order, at most `how.max`
/// each. When a group ends, the next groups start.
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
        let run = (how.run)(act, group, Replies::new(replies, how.missing));
        ctx.spawn(run.into_actor(act).map(move |(), act, ctx| {
            if let Some(g) = (how.grouping)(act) {
                g.done();
            }
            start_counted(act, ctx, how);
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_requester_gets_one_outcome_and_the_unanswered_get_missing() {
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| oneshot::channel::<i32>()).unzip();
        let mut replies = Replies::new(senders, || -1);
        replies.send(2, 20);
        replies.send(2, 21); // answered already: ignored
        replies.send(9, 90); // no such request: ignored
        assert_eq!(replies.unanswered(), vec![0, 1, 3]);
        replies.send(0, 0);
        drop(replies);
        let got: Vec<_> = receivers.iter_mut().map(|r| r.try_recv().ok()).collect();
        assert_eq!(got, vec![Some(0), Some(-1), Some(20), Some(-1)]);
    }

    #[test]
    fn send_all_answers_in_order_from_the_first() {
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel::<i32>()).unzip();
        Replies::new(senders, || -1).send_all([7, 8]);
        let got: Vec<_> = receivers.iter_mut().map(|r| r.try_recv().ok()).collect();
        assert_eq!(got, vec![Some(7), Some(8), Some(-1)]);
    }
}
