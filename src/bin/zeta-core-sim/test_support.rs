//! Helpers shared by the unit tests of several modules.

use std::io::Cursor;

use crate::http_request::{read_head, Head, ReadHead};

pub(crate) fn head_of(raw: &str) -> ReadHead {
    read_head(&mut Cursor::new(raw.as_bytes().to_vec()))
}

pub(crate) fn request(raw: &str) -> Head {
    match head_of(raw) {
        ReadHead::Request(head) => *head,
        other => panic!("expected a request, got {other:?}"),
    }
}
