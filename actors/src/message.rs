//! Messages: the actor reading users' inboxes, and the rules of
//! `message_get`.
//!
//! Accepts: [`GetMessages`].
//!
//! Messages are written by the realm operations that send them
//! (`realm_update_roles`, `realm_start_reencryption_maintenance`), in the
//! same atomic step as the change they announce; this module only reads.

use std::sync::Arc;

use actix::prelude::*;
use parsec_protocol::cmds;
use parsec_protocol::cmds::authenticated::MessageGet;
use parsec_protocol::types::*;
use parsec_protocol::value::{self, Value};

use crate::backend::*;
use crate::client::AuthenticatedClient;
use crate::{Actors, backend_handler};

/// Owns the message backend.
pub struct MessageActor {
    backend: Arc<dyn MessageBackend>,
}

impl MessageActor {
    pub fn new(backend: Arc<dyn MessageBackend>) -> Self {
        Self { backend }
    }
}

impl Actor for MessageActor {
    type Context = Context<Self>;
}

/// A user's messages after an offset.
#[derive(Message)]
#[rtype(result = "Result<Vec<InboxMessage>, Internal>")]
pub struct GetMessages {
    pub org: OrganizationId,
    pub recipient: UserId,
    pub offset: u64,
}

backend_handler!(MessageActor, GetMessages, |b, m| b
    .get(&m.org, &m.recipient, m.offset)
    .await);

/// `message_get` (commands.md §4.1): messages to the requesting user (any of
/// its devices), skipping `offset`; `count` is each one's 1-based position.
pub async fn get(actors: &Actors, client: &AuthenticatedClient, req: MessageGet) -> Result<Value, Internal> {
    // The schema refuses negative offsets.
    let offset = req.offset.unsigned_abs();
    let msg = GetMessages {
        org: client.org.clone(),
        recipient: client.user_id.clone(),
        offset,
    };
    let messages = actors.message.send(msg).await??;
    let messages = messages.into_iter().zip(offset + 1..).map(|(m, count)| {
        value::map([
            ("count", Value::from(count)),
            ("sender", Value::from(m.sender.as_str())),
            ("timestamp", m.timestamp.to_value()),
            ("body", Value::Binary(m.body)),
        ])
    });
    Ok(cmds::ok(vec![("messages", Value::Array(messages.collect()))]))
}
