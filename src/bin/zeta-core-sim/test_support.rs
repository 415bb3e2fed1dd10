//! Helpers shared by the unit tests of several modules.

use std::io::Cursor;
use std::time::Instant;

use crate::cli::{Announce, Options};
use crate::http_request::{read_head, Head, ReadHead};
use crate::node::Shared;
use crate::rpc::UpgradeStatus;

/// Reads the head of a request given as text.
pub(crate) fn head_of(raw: &str) -> ReadHead {
    read_head(&mut Cursor::new(raw.as_bytes().to_vec()))
}

/// The head of a request given as text, which must be accepted.
pub(crate) fn request(raw: &str) -> Head {
    match head_of(raw) {
        ReadHead::Request(head) => *head,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The `Date` the serialization tests pass: 1 700 000 000 seconds after the epoch.
pub(crate) const DATE: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

/// The pieces of a serialized answer, joined as text.
pub(crate) fn text(pieces: &[Vec<u8>]) -> String {
    String::from_utf8(pieces.concat()).expect("answer is text")
}

/// An upgrade status with the accepted release as (tag, height).
pub(crate) fn status(accepted: Option<(&str, u64)>, ready: bool) -> UpgradeStatus {
    UpgradeStatus {
        accepted: accepted.map(|(tag, height)| Announce {
            tag: tag.to_string(),
            height,
        }),
        ready,
    }
}

/// The state of a node started now with `opts`, without a record file.
pub(crate) fn test_shared(opts: Options) -> Shared {
    Shared::new(opts, Instant::now(), None)
}
