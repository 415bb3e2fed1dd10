//! The systemd notification protocol: `READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1` and
//! `EXTEND_TIMEOUT_USEC=` sent to `$NOTIFY_SOCKET` (see SYSTEMD in visor(1)).
//!
//! It owns the notification socket, the reading of `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and
//! `$WATCHDOG_PID`, and the text of the messages. It must not decide anything: when to notify
//! and what to say is the coordinator's, and a failed send is returned to it, never retried,
//! logged or panicked on here.
//!
//! The protocol, as sd_notify(3) and systemd.service(5) describe it: the service manager
//! listens on a UNIX datagram socket whose address it puts in `$NOTIFY_SOCKET`, either a
//! filesystem path starting with `/` or, when the value starts with `@`, a name in Linux's
//! abstract namespace (the `@` stands for the leading NUL byte of `sun_path`). A notification
//! is one datagram holding newline-separated `VARIABLE=value` assignments. The manager learns
//! the sender's pid from the credentials the kernel attaches to the datagram, so the socket
//! needs no binding and no handshake.
//!
//! Visor's own environment is left as it is, but the node processes are started without
//! `$NOTIFY_SOCKET` and `$WATCHDOG_*` (see `process::spawn`), and the example unit
//! (contrib/visor.service) uses `NotifyAccess=main`, under which systemd accepts
//! notifications from Visor's pid only: a node can neither mark the service ready nor feed
//! its watchdog.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// Tells systemd that start-up is finished (for Visor: the core answered its first RPC).
pub const READY: &str = "READY=1";
/// Tells systemd that Visor is shutting down.
pub const STOPPING: &str = "STOPPING=1";
/// Feeds the watchdog; sent every [`watchdog_interval`].
pub const WATCHDOG: &str = "WATCHDOG=1";

/// How long [`Notifier::send`] may wait for room in the manager's queue. A manager that is
/// too busy to take a datagram within this time gets an error instead of stalling the
/// coordinator, which has nodes to supervise.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// An unbound datagram socket and the address of the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// The address as `$NOTIFY_SOCKET` spells it, for error messages and logs.
    display: String,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`. `Ok(None)` when it is unset or empty, as when Visor is not run
    /// by systemd or runs under `Type=simple`/`Type=exec`.
    pub fn from_env() -> Result<Option<Notifier>, String> {
        Notifier::from_env_value(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// [`Notifier::from_env`] with the variable's value given: a path starting with `/`, or
    /// an abstract-namespace name after an `@`. Any other form is an error naming the value.
    pub fn from_env_value(value: Option<&OsStr>) -> Result<Option<Notifier>, String> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            Notifier::for_abstract(name).map(Some)
        } else if bytes.starts_with(b"/") {
            Notifier::for_path(Path::new(value)).map(Some)
        } else {
            Err(format!(
                "NOTIFY_SOCKET={} is neither an absolute path nor an abstract socket name \
                 starting with '@', so no systemd notification can be sent; unset NOTIFY_SOCKET \
                 or run Visor under a service manager that sets it to a UNIX socket",
                value.to_string_lossy()
            ))
        }
    }

    /// A notifier for the socket bound at the filesystem path `path`.
    pub fn for_path(path: &Path) -> Result<Notifier, String> {
        let display = path.to_string_lossy().into_owned();
        let address = SocketAddr::from_pathname(path).map_err(|e| {
            format!(
                "NOTIFY_SOCKET={display} cannot be used as a UNIX socket address ({e}): a \
                 socket path must be shorter than 108 bytes and hold no NUL byte; unset \
                 NOTIFY_SOCKET or give the service manager a shorter socket path"
            )
        })?;
        Notifier::with_address(address, display)
    }

    /// A notifier for the socket bound at `name` in the abstract namespace (the name without
    /// the leading `@` or NUL byte).
    pub fn for_abstract(name: &[u8]) -> Result<Notifier, String> {
        let display = format!("@{}", String::from_utf8_lossy(name));
        if name.is_empty() {
            return Err(format!(
                "NOTIFY_SOCKET={display} names no abstract socket; unset NOTIFY_SOCKET or set \
                 it to '@' followed by the socket's name"
            ));
        }
        let address = SocketAddr::from_abstract_name(name).map_err(|e| {
            format!(
                "NOTIFY_SOCKET={display} cannot be used as an abstract socket address ({e}): \
                 the name must be shorter than 108 bytes; unset NOTIFY_SOCKET or give the \
                 service manager a shorter socket name"
            )
        })?;
        Notifier::with_address(address, display)
    }

    fn with_address(address: SocketAddr, display: String) -> Result<Notifier, String> {
        // std creates every socket with SOCK_CLOEXEC, so the node processes do not inherit it.
        let socket = UnixDatagram::unbound().map_err(|e| {
            format!(
                "cannot create a UNIX datagram socket to notify systemd at {display}: {e}; \
                 check that the service may create AF_UNIX sockets \
                 (RestrictAddressFamilies= in its unit)"
            )
        })?;
        socket.set_write_timeout(Some(SEND_TIMEOUT)).map_err(|e| {
            format!("cannot set a send time-out on the socket to notify systemd at {display}: {e}")
        })?;
        Ok(Notifier {
            socket,
            address,
            display,
        })
    }

    /// The socket's address as `$NOTIFY_SOCKET` spells it (`/run/...` or `@name`).
    #[cfg(test)]
    pub fn address(&self) -> &str {
        &self.display
    }

    /// Sends `message` (one or more `VARIABLE=value` lines, such as
    /// `"READY=1\nSTATUS=running v1.2.3"`) as one datagram. An empty message, a partial send
    /// and every socket error are returned; the error names the socket.
    pub fn send(&self, message: &str) -> io::Result<()> {
        if message.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "empty notification for systemd at {}; send at least one VARIABLE=value line",
                    self.display
                ),
            ));
        }
        match self.socket.send_to_addr(message.as_bytes(), &self.address) {
            Ok(sent) if sent == message.len() => Ok(()),
            Ok(sent) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "only {sent} of {} bytes of a notification reached systemd at {}; \
                     send shorter notifications",
                    message.len(),
                    self.display
                ),
            )),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot notify systemd at {}: {e}; check that the unit has Type=notify and \
                     NotifyAccess=main, or unset NOTIFY_SOCKET when Visor is not run by systemd",
                    self.display
                ),
            )),
        }
    }
}

/// `STATUS=<text>` with any line break in `text` replaced by a space, because a line break
/// would end the assignment and start another.
pub fn status(text: &str) -> String {
    let mut message = String::with_capacity(7 + text.len());
    message.push_str("STATUS=");
    message.extend(text.chars().map(|c| match c {
        '\n' | '\r' => ' ',
        c => c,
    }));
    message
}

/// `EXTEND_TIMEOUT_USEC=<n>`: asks systemd to allow `d` more for the current start-up or
/// shutdown, counted from when it receives the message.
pub fn extend_timeout(d: Duration) -> String {
    format!("EXTEND_TIMEOUT_USEC={}", d.as_micros())
}

/// How often to send [`WATCHDOG`]: half of `$WATCHDOG_USEC`, when it is set and valid and
/// `$WATCHDOG_PID` is either unset or Visor's own pid. `None` means no watchdog is expected.
pub fn watchdog_interval() -> Option<Duration> {
    // A value that is not UTF-8 is passed on as "" so that it fails to parse rather than
    // counting as unset.
    let read = |name: &str| {
        std::env::var_os(name).map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
    };
    watchdog_interval_from(
        read("WATCHDOG_USEC").as_deref(),
        read("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// [`watchdog_interval`] with the two variables' values and our pid given. A timeout that is
/// not a positive whole number of microseconds, or a pid that does not parse or is not
/// `our_pid`, gives `None`, as sd_watchdog_enabled(3) treats them.
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok().filter(|&n| n > 0)?;
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// A name no other test, and no other run of the tests, uses at the same time.
    fn unique(label: &str) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        format!(
            "zeta-visor-notify-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A folder under the system temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let path = std::env::temp_dir().join(unique("dir"));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set read timeout");
        let mut buffer = [0u8; 4096];
        let n = socket.recv(&mut buffer).expect("receive a notification");
        String::from_utf8(buffer[..n].to_vec()).expect("UTF-8 notification")
    }

    #[test]
    fn path_round_trip() {
        let dir = TempDir::new();
        let path = dir.0.join("notify.sock");
        let manager = UnixDatagram::bind(&path).expect("bind notify socket");
        let notifier = Notifier::for_path(&path).expect("notifier");
        assert_eq!(notifier.address(), path.to_str().expect("UTF-8 path"));

        let first = format!("{READY}\n{}", status("running v1.2.3"));
        notifier.send(&first).expect("send READY");
        notifier.send(WATCHDOG).expect("send WATCHDOG");
        notifier.send(STOPPING).expect("send STOPPING");
        assert_eq!(receive(&manager), "READY=1\nSTATUS=running v1.2.3");
        assert_eq!(receive(&manager), "WATCHDOG=1");
        assert_eq!(receive(&manager), "STOPPING=1");
    }

    #[test]
    fn from_env_value_reads_a_path() {
        let dir = TempDir::new();
        let path = dir.0.join("notify.sock");
        let manager = UnixDatagram::bind(&path).expect("bind notify socket");
        let notifier = Notifier::from_env_value(Some(path.as_os_str()))
            .expect("valid value")
            .expect("a notifier");
        notifier.send("STATUS=restarting 2/3").expect("send");
        assert_eq!(receive(&manager), "STATUS=restarting 2/3");
    }

    #[test]
    fn abstract_round_trip() {
        let name = unique("abstract");
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let manager = UnixDatagram::bind_addr(&address).expect("bind abstract socket");

        let value = format!("@{name}");
        let notifier = Notifier::from_env_value(Some(OsStr::new(&value)))
            .expect("valid value")
            .expect("a notifier");
        assert_eq!(notifier.address(), value);
        notifier
            .send("STATUS=upgrade v1.3.0 accepted at 1200000")
            .expect("send");
        assert_eq!(
            receive(&manager),
            "STATUS=upgrade v1.3.0 accepted at 1200000"
        );

        let direct = Notifier::for_abstract(name.as_bytes()).expect("notifier");
        direct
            .send(&extend_timeout(Duration::from_secs(90)))
            .expect("send");
        assert_eq!(receive(&manager), "EXTEND_TIMEOUT_USEC=90000000");
    }

    #[test]
    fn the_socket_is_not_inherited_by_children() {
        use std::os::fd::AsRawFd;
        let notifier = Notifier::for_abstract(unique("cloexec").as_bytes()).expect("notifier");
        // SAFETY: F_GETFD on a descriptor the notifier owns reads its flags and changes nothing.
        let flags = unsafe { libc::fcntl(notifier.socket.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn unset_or_empty_means_no_notifier() {
        assert!(Notifier::from_env_value(None).expect("ok").is_none());
        assert!(Notifier::from_env_value(Some(OsStr::new("")))
            .expect("ok")
            .is_none());
    }

    #[test]
    fn malformed_values_are_errors_naming_the_value() {
        let relative = Notifier::from_env_value(Some(OsStr::new("run/notify"))).unwrap_err();
        assert!(relative.contains("NOTIFY_SOCKET=run/notify"), "{relative}");
        assert!(relative.contains("unset NOTIFY_SOCKET"), "{relative}");

        let bare = Notifier::from_env_value(Some(OsStr::new("@"))).unwrap_err();
        assert!(bare.contains("NOTIFY_SOCKET=@ "), "{bare}");

        let long_path = format!("/{}", "x".repeat(200));
        let long = Notifier::from_env_value(Some(OsStr::new(&long_path))).unwrap_err();
        assert!(long.contains(&long_path), "{long}");
        assert!(long.contains("108 bytes"), "{long}");

        let long_name = format!("@{}", "y".repeat(200));
        let long = Notifier::from_env_value(Some(OsStr::new(&long_name))).unwrap_err();
        assert!(long.contains(&long_name), "{long}");
    }

    #[test]
    fn send_errors_name_the_socket() {
        let dir = TempDir::new();
        let path = dir.0.join("nobody-listens.sock");
        let notifier = Notifier::for_path(&path).expect("notifier");
        let error = notifier.send(READY).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error.to_string().contains(path.to_str().unwrap()),
            "{error}"
        );

        let empty = notifier.send("").unwrap_err();
        assert_eq!(empty.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_full_queue_gives_an_error_instead_of_blocking() {
        let dir = TempDir::new();
        let path = dir.0.join("busy.sock");
        // Bound and never read, as a manager too busy to keep up.
        let _manager = UnixDatagram::bind(&path).expect("bind notify socket");
        let notifier = Notifier::for_path(&path).expect("notifier");
        let started = Instant::now();
        let mut error = None;
        for _ in 0..100_000 {
            if let Err(e) = notifier.send(WATCHDOG) {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("the queue fills up");
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn status_keeps_to_one_line() {
        assert_eq!(status("running v1.2.3"), "STATUS=running v1.2.3");
        assert_eq!(status("a\nREADY=1\r\nb"), "STATUS=a READY=1  b");
    }

    #[test]
    fn extend_timeout_is_in_microseconds() {
        assert_eq!(
            extend_timeout(Duration::from_millis(1500)),
            "EXTEND_TIMEOUT_USEC=1500000"
        );
        assert_eq!(extend_timeout(Duration::ZERO), "EXTEND_TIMEOUT_USEC=0");
    }

    #[test]
    fn watchdog_interval_parsing() {
        let me = 4242;
        // Unset.
        assert_eq!(watchdog_interval_from(None, None, me), None);
        assert_eq!(watchdog_interval_from(None, Some("4242"), me), None);
        // Not a positive whole number.
        for bad in ["", "abc", "-30000000", "1.5", "30s", " 30000000", "0"] {
            assert_eq!(watchdog_interval_from(Some(bad), None, me), None, "{bad:?}");
        }
        // Halving, with and without a matching pid.
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, me),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("4242"), me),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(Some("1"), None, me),
            Some(Duration::from_nanos(500))
        );
        // The watchdog is another process's, or its pid is unreadable.
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("1"), me),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("x"), me),
            None
        );
        assert_eq!(watchdog_interval_from(Some("30000000"), Some(""), me), None);
    }
}
