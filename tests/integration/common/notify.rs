//! A stand-in for systemd's notification socket: a datagram socket in the test folder whose
//! messages (`READY=1`, `STATUS=...`) arrive on a channel with the instant each came.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use super::Env;

/// Binds `notify.sock` in the test folder; its path (for `NOTIFY_SOCKET`) and the messages.
pub fn notify_listener(env: &Env) -> (PathBuf, Receiver<(Instant, String)>) {
    let path = env.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if tx.send((Instant::now(), text)).is_err() {
                return;
            }
        }
    });
    (path, rx)
}
