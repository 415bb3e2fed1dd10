//! Helpers shared by the unit tests of several modules.

use std::io::Cursor;
use std::time::Instant;

use crate::cli::{Announce, Options};
use crate::http_request::{read_head, Head, ReadHead};
use crate::node::Shared;
use crate::rpc::UpgradeStatus;

pub(crate) fn head_of(raw: &str) -> ReadHead {
    read_head(&mut Cursor::new(raw.as_bytes().to_vec()))
}

pub(crate) fn request(raw: &str) -> Head {
    match head_of(raw) {
        ReadHead::Request(head) => *head,
        other => panic!("expected a request, got {other:?}"),
    }
}

pub(crate) const DATE: &str = "Tue, 14 Nov 2023 22:13:20 GMT";

pub(crate) fn text(pieces: &[Vec<u8>]) -> String {
    String::from_utf8(pieces.concat()).expect("answer is text")
}

pub(crate) fn status(accepted: Option<(&str, u64)>, ready: bool) -> UpgradeStatus {
    UpgradeStatus {
        accepted: accepted.map(|(tag, height)| Announce {
            tag: tag.to_string(),
            height,
        }),
        ready,
    }
}

pub(crate) fn test_shared(opts: Options) -> Shared {
    Shared::new(opts, Instant::now(), None)
}
