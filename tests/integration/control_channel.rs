//! What `visor status`, `restart` and `switch` learn about the running Visor and how they reach
//! it: the exit codes of `status` (0 running, 3 not running, 4 cannot tell, 78 config.toml),
//! "cannot tell" when the lock cannot be tested, the control socket's limits (one deadline
//! per request line, `busy` when every slot is taken) and a home too deep for a socket path.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

fn running_env(name: &str) -> Env {
    let mut env = Env::new(name);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    env
}

fn status_json(env: &Env) -> (i32, serde_json::Value) {
    let (code, stdout, stderr) = env.run_visor_command(&["status", "--output", "json"]);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    (code, value)
}

#[test]
fn status_exits_0_running_3_not_running_4_cannot_tell_78_bad_config() {
    let mut env = running_env("statuscodes");
    let (code, text, _) = env.run_visor_command(&["status"]);
    assert_eq!(code, 0, "{text}");
    let (code, json) = status_json(&env);
    assert_eq!((code, &json["running"]), (0, &serde_json::json!(true)));

    env.signal_visor(libc::SIGTERM);
    assert_eq!(env.wait_visor_exit(DEADLINE), 0);
    let (code, text, _) = env.run_visor_command(&["status"]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("visor:            not running"), "{text}");
    let (code, json) = status_json(&env);
    assert_eq!((code, &json["running"]), (3, &serde_json::json!(false)));
    assert_eq!(json["cannot_tell"], serde_json::Value::Null);

    // A supervise folder that is a link: its lock says nothing.
    let folder = env.home.join(".visor");
    let moved = env.dir.join("moved-visor");
    std::fs::rename(&folder, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &folder).unwrap();
    let (code, text, _) = env.run_visor_command(&["status"]);
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains(&format!(
            "visor:            cannot tell whether Visor runs on {}: {}: is a symbolic link",
            env.home.display(),
            folder.display()
        )),
        "{text}"
    );
    let (code, json) = status_json(&env);
    assert_eq!(code, 4);
    assert_eq!(json["running"], serde_json::Value::Null);
    assert!(json["cannot_tell"]
        .as_str()
        .unwrap()
        .contains("is a symbolic link"));

    // An unusable config.toml wins over both.
    env.write_config("maxNumberOfRestarts = \"many\"\n");
    let (code, _) = status_json(&env);
    assert_eq!(code, 78);
    std::fs::remove_file(&folder).unwrap();
    let (code, text, _) = env.run_visor_command(&["status"]);
    assert_eq!(code, 78, "{text}");
}

/// A client of another user cannot open the lock (the supervise folder is 0700): it cannot
/// tell, and says so, instead of "not running" or "the lock is free".
#[test]
fn another_user_is_told_it_cannot_tell_whether_visor_runs() {
    if !as_root() {
        println!("SKIPPED another_user_is_told_it_cannot_tell_whether_visor_runs: not root, cannot run a client as nobody");
        return;
    }
    let env = running_env("cannottell");
    let Some(status) = visor_as(NOBODY, &["status"], &env.home) else {
        println!(
            "SKIPPED another_user_is_told_it_cannot_tell_whether_visor_runs: setpriv cannot run"
        );
        return;
    };
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(4), "{stdout}");
    let expected = format!(
        "cannot tell whether Visor runs on {}: {}: cannot open (Permission denied",
        env.home.display(),
        env.home.join(".visor/lock").display()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("not running"), "{stdout}");
    assert!(
        stdout.contains("run it as that user (sudo -u root visor status --home "),
        "{stdout}"
    );

    let json = visor_as(NOBODY, &["status", "--output", "json"], &env.home).unwrap();
    assert_eq!(json.status.code(), Some(4));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["running"], serde_json::Value::Null);

    for args in [vec!["restart"], vec!["switch", "v1"]] {
        let out = visor_as(NOBODY, &args, &env.home).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("is free"), "{args:?}: {stderr}");
    }
    assert_eq!(env.starts("core").len(), 1, "nothing was restarted");
}

/// A client that sends a byte every 3 s, never a whole line: how long after connecting Visor
/// closed the connection, or `None` if it had not after `give_up`. A connection answered
/// `busy` (the slots were all taken at that moment) is made again. Once a connection has
/// gone 200 ms without an answer, it holds a slot: that is said once on `holding`.
fn slow_client(
    socket: &Path,
    give_up: Duration,
    holding: std::sync::mpsc::Sender<()>,
) -> Option<Duration> {
    let first = Instant::now();
    let mut said = false;
    'connect: while first.elapsed() < give_up {
        let start = Instant::now();
        let mut stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut last_byte = Instant::now() - Duration::from_secs(3);
        let mut buffer = [0u8; 512];
        while first.elapsed() < give_up {
            if last_byte.elapsed() >= Duration::from_secs(3) {
                if stream.write_all(b"r").is_err() {
                    return Some(start.elapsed());
                }
                last_byte = Instant::now();
            }
            match stream.read(&mut buffer) {
                Ok(n) if buffer[..n].starts_with(b"busy") => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue 'connect;
                }
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !said && start.elapsed() >= Duration::from_millis(200) {
                        said = true;
                        let _ = holding.send(());
                    }
                }
                Err(_) => return Some(start.elapsed()),
            }
        }
    }
    None
}

/// Waits until a new connection to `socket` is answered `busy`: every slot is held.
fn wait_until_busy(socket: &Path) {
    wait_until("a new connection answered busy", DEADLINE, || {
        let Ok(mut stream) = UnixStream::connect(socket) else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut answer = [0u8; 4];
        matches!(stream.read(&mut answer), Ok(4)) && &answer == b"busy"
    });
}

#[test]
fn slow_clients_are_cut_at_5_s_and_a_full_visor_answers_busy() {
    let env = running_env("slowclients");
    let socket = env.home.join(".visor/control");
    let (holding, held) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            let holding = holding.clone();
            std::thread::spawn(move || slow_client(&socket, Duration::from_secs(12), holding))
        })
        .collect();
    // Once the four hold every slot, a fifth connection is answered busy. Probing before
    // would take a slot from a slow client, and the probe could keep winning it back.
    for _ in 0..4 {
        held.recv_timeout(DEADLINE)
            .expect("a slow client never got a slot");
    }
    wait_until_busy(&socket);
    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    println!("restart beside four slow clients: exit {code}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    match code {
        75 => assert!(
            stderr.contains("Visor is busy serving other control connections; try again"),
            "{stderr}"
        ),
        0 => assert!(stdout.contains("v1 is running and answering"), "{stdout}"),
        other => panic!("restart exited {other}: {stdout}{stderr}"),
    }
    for client in clients {
        let cut = client.join().unwrap().expect("a slow client was never cut");
        println!("slow client cut after {cut:?}");
        assert!(
            cut >= Duration::from_millis(4500) && cut < Duration::from_millis(7500),
            "cut after {cut:?}, not at the 5 s deadline of its request"
        );
    }
    // Their slots are free again.
    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A home so deep that `HOME/.visor/control` is longer than a socket address holds: Visor
/// binds it, and the commands reach it, through the supervise folder's descriptor.
#[test]
fn a_home_150_bytes_deep_still_has_a_control_socket() {
    let mut env = Env::new("deephome");
    let prefix = env.dir.display().to_string().len() + 1;
    let deep = env.dir.join("h".repeat(150 - prefix));
    std::fs::create_dir(&deep).unwrap();
    env.home = deep;
    assert_eq!(env.home.as_os_str().len(), 150);
    env.write_config(&quick_config(""));
    env.add_version(Version::new("genesis", "v1"));
    env.start_visor();
    env.wait_log("rpc: core is answering");
    let log = env.log();
    assert!(!log.contains("control socket"), "{log}");

    let (code, stdout, stderr) = env.run_visor_command(&["restart"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("v1 is running and answering"), "{stdout}");
    env.wait_starts("core", 2);
    let (code, stdout, _) = env.run_visor_command(&["check"]);
    assert_eq!(code, 0, "{stdout}");
    let (code, _) = status_json(&env);
    assert_eq!(code, 0);
}
