//! Link redirect (HTTP) → ClickIntake.

use crate::domain::LinkClick;
use crate::store::StoreError;
use actix::Message;

/// Link redirect → ClickIntake: record these clicks. The redirect does not
/// wait for the answer (it hands the click over with `try_send` and answers
/// 302 at once); the answer says when the clicks are durable, or why not.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordClicks(pub Vec<LinkClick>);
