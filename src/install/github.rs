//! GitHub releases over HTTP(S) for auto-install: the release lookup
//! (`GET {apiUrl}/repos/{owner}/{repo}/releases/tags/{tag}`), and downloads of its assets,
//! either streamed to a file with the SHA-256 computed on the way or, for a small checksum
//! file, held in memory up to a limit.
//!
//! It owns the HTTP side: headers, the token, redirects (followed here, hop by hop, so that
//! every hop is checked: `http://` only to loopback hosts, and the token only to the API's own
//! origin), the certificates trusted (a [`Trust`] from `trust`), the meaning of status codes
//! and TLS failures, and retries of transient failures with backoff.
//!
//! With a token, an asset is downloaded through its API `url` (which serves the assets of
//! private repositories) with `Accept: application/octet-stream`; the token goes with that
//! first request only, never with the redirect to the storage that serves the bytes. Without a
//! token, the asset's `browser_download_url` is used.
//!
//! It must not decide what is installed or where: it writes only the one file it is told to,
//! never holds a whole asset in memory, never logs the token, and reports progress only through
//! the [`Progress`] it is given.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use ureq::http::{HeaderMap, Response};
use ureq::{Agent, Body, BodyReader};

use super::error::{
    forbidden, interrupted, invalid, local, not_found, timed_out, transient, InstallError,
    InstallErrorKind,
};
use super::progress::Progress;
use super::space::{Room, CHECK_EVERY};
use super::trust::Trust;
use crate::config::url::{check_url, origin, Origin};

/// The waits between attempts of a request that failed transiently; one more attempt is made
/// than there are entries, so this allows four attempts in all.
pub const BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// How many redirects one request may follow (GitHub uses one, to its object storage).
pub const MAX_REDIRECTS: usize = 10;

/// The longest time between two progress lines of a download.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Below this many bytes per second over a progress period, a download is called very slow
/// in its own progress line.
pub const SLOW_RATE: u64 = 1024;

/// The API version Visor's requests are written for.
const API_VERSION: &str = "2022-11-28";

/// The media type of the GitHub REST API's JSON answers.
const API_ACCEPT: &str = "application/vnd.github+json";

/// The media type asked for when downloading an asset.
const DOWNLOAD_ACCEPT: &str = "application/octet-stream";

/// The largest release description (JSON) read.
const MAX_RELEASE_JSON: u64 = 8 << 20;

/// The largest error body read, to quote GitHub's own message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// How long an API call may take in all.
const API_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a download may go without receiving a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The size of the chunks a download is streamed in.
const CHUNK: usize = 64 << 10;

/// How many chunks the reading thread may hold ahead of the writer.
const QUEUED_CHUNKS: usize = 4;

/// How long the download loop waits for a chunk before it looks at the clock and the cancel
/// flag again.
const TICK: Duration = Duration::from_millis(250);

/// The part of GitHub's release answer that Visor uses; other fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Release {
    /// The release's tag.
    #[serde(default)]
    pub tag_name: String,
    /// The files attached to the release.
    #[serde(default)]
    pub assets: Vec<Asset>,
}

impl Release {
    /// The asset named `name`, if the release has it.
    pub fn asset(&self, name: &str) -> Option<&Asset> {
        self.assets.iter().find(|asset| asset.name == name)
    }

    /// The release's asset names for messages, or "no assets".
    pub fn asset_list(&self) -> String {
        if self.assets.is_empty() {
            return "no assets".to_owned();
        }
        let names: Vec<&str> = self.assets.iter().map(|a| a.name.as_str()).collect();
        format!("assets {}", names.join(", "))
    }
}

/// One file attached to a release.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Asset {
    /// The file name.
    pub name: String,
    /// The asset's API URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Where the file is downloaded from (GitHub redirects it to its object storage).
    pub browser_download_url: String,
    /// The media type the publisher gave.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// `sha256:<hex>` when GitHub computed it.
    #[serde(default)]
    pub digest: Option<String>,
}

/// A finished download: its length, SHA-256 (lowercase hex) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
    /// The URL (or file) the bytes were fetched from, for messages.
    pub from: String,
}

/// What a request is about, for messages: `what` names it, `not_found` says what to do on 404.
struct Target<'s> {
    what: &'s str,
    not_found: &'s str,
}

/// Which hops of a request carry the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Every hop to the API's origin: API calls, whose redirects (a renamed repository) stay
    /// on the API and need the token again.
    ApiHops,
    /// The first hop only, when it goes to the API's origin: asset downloads, whose redirect
    /// goes to storage with its own signed URL, where a second credential is refused.
    FirstHop,
}

/// A GitHub client for one install: the API base, the token, the trusted certificates and the
/// retry schedule.
pub struct Client<'c> {
    api: Agent,
    download: Agent,
    api_url: String,
    api_origin: Option<Origin>,
    token: Option<String>,
    /// Where the trusted certificates come from, for messages.
    trust: String,
    backoff: Vec<Duration>,
    cancel: &'c AtomicBool,
    download_timeout: Duration,
    /// `maxDownloadBytes` and `minFreeBytes`.
    room: Room,
}

/// The overall deadline of one asset download, retries included.
struct Deadline<'d> {
    at: Instant,
    limit: Duration,
    what: &'d str,
    url: &'d str,
}

impl Deadline<'_> {
    fn new<'d>(limit: Duration, what: &'d str, url: &'d str) -> Deadline<'d> {
        let now = Instant::now();
        Deadline {
            // A limit too far away for the clock is no limit at all.
            at: now
                .checked_add(limit)
                .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86_400)),
            limit,
            what,
            url,
        }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The failure at the deadline; `progress` is the bytes received and expected, if known.
    fn error(&self, progress: Option<(u64, Option<u64>)>) -> InstallError {
        let arrived = match progress {
            Some((bytes, Some(total))) => format!(" after {bytes} of {total} bytes"),
            Some((bytes, None)) => format!(" after {bytes} bytes"),
            None => String::new(),
        };
        timed_out(format!(
            "{}: the download from {} did not finish within downloadTimeoutSeconds = {} and was \
             stopped{arrived}; raise downloadTimeoutSeconds in [autoInstall] of config.toml for \
             a large asset on a slow link, or check the network",
            self.what,
            self.url,
            self.limit.as_secs()
        ))
    }
}

/// One asset download: what is fetched, into which file, by when.
struct Download<'d> {
    asset: &'d Asset,
    url: &'d str,
    file: &'d Path,
    target: Target<'d>,
    deadline: Deadline<'d>,
}

/// The state of one download attempt's body: what arrived, its hash, and when the last
/// progress line was written.
struct Transfer {
    hasher: Sha256,
    bytes: u64,
    /// The length the release or the answer gives, if any.
    expected: Option<u64>,
    /// More bytes than this refuse the download: the length expected, or `maxDownloadBytes`.
    limit: u64,
    /// When the free space is looked at next, in bytes received.
    next_space_check: u64,
    started: Instant,
    last_line: Instant,
    bytes_at_last_line: u64,
}

impl Transfer {
    fn new(expected: Option<u64>, max_bytes: u64) -> Transfer {
        let started = Instant::now();
        Transfer {
            hasher: Sha256::new(),
            bytes: 0,
            expected,
            limit: expected.unwrap_or(max_bytes).min(max_bytes),
            next_space_check: CHECK_EVERY,
            started,
            last_line: started,
            bytes_at_last_line: 0,
        }
    }

    /// Receives chunks until the body ends, checking the cancel flag and the deadline at
    /// least every [`TICK`] and writing the progress lines.
    fn stream(
        &mut self,
        client: &Client,
        job: &Download,
        chunks: &Receiver<std::io::Result<Vec<u8>>>,
        out: &mut File,
        progress: &mut dyn Progress,
    ) -> Result<(), InstallError> {
        let (what, url, deadline) = (job.target.what, job.url, &job.deadline);
        loop {
            client.check_cancel(what)?;
            if deadline.passed() {
                return Err(deadline.error(Some((self.bytes, self.expected))));
            }
            // The wait is short so that a stalled download still gets its progress lines
            // and a cancel is seen; the reader thread holds at most a few chunks.
            match chunks.recv_timeout(TICK) {
                Ok(Ok(chunk)) if chunk.is_empty() => return Ok(()),
                Ok(Ok(chunk)) => self.receive(&client.room, job, &chunk, out)?,
                Ok(Err(_)) if deadline.passed() => {
                    return Err(deadline.error(Some((self.bytes, self.expected))));
                }
                Ok(Err(e)) => return Err(truncated(what, url, self.bytes, self.expected, &e)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(truncated(
                        what,
                        url,
                        self.bytes,
                        self.expected,
                        &"the reading thread stopped",
                    ))
                }
            }
            self.tick(job, progress);
        }
    }

    /// One chunk: counted against the limit, hashed and written; the free space is looked at
    /// every [`CHECK_EVERY`] bytes.
    fn receive(
        &mut self,
        room: &Room,
        job: &Download,
        chunk: &[u8],
        out: &mut File,
    ) -> Result<(), InstallError> {
        let (what, url, limit) = (job.target.what, job.url, self.limit);
        self.bytes += chunk.len() as u64;
        if self.bytes > limit {
            room.check_size(
                what,
                &format!("the download from {url} reached"),
                self.bytes,
            )?;
            return Err(invalid(format!(
                "{what}: {url} sends more than the {limit} bytes expected; the asset or the \
                 mirror is inconsistent: report it to the publisher"
            )));
        }
        if self.bytes >= self.next_space_check {
            self.next_space_check = self.bytes.saturating_add(CHECK_EVERY);
            let left = self.expected.map_or(0, |e| e.saturating_sub(self.bytes));
            room.check_free(what, left)?;
        }
        self.hasher.update(chunk);
        out.write_all(chunk).map_err(|e| {
            local(format!(
                "{what}: cannot write {} ({e}); check the free space of the home folder",
                job.file.display()
            ))
        })
    }

    /// The progress line once [`PROGRESS_INTERVAL`] has passed since the last, and the "very
    /// slow" line after it when little arrived meanwhile.
    fn tick(&mut self, job: &Download, progress: &mut dyn Progress) {
        let period = self.last_line.elapsed();
        if period < PROGRESS_INTERVAL {
            return;
        }
        let name = &job.asset.name;
        self.last_line = Instant::now();
        progress.report(
            &format!("install: downloading {name}"),
            download_fields(self.bytes, self.expected, self.started.elapsed()),
        );
        let recent = self.bytes - self.bytes_at_last_line;
        self.bytes_at_last_line = self.bytes;
        if is_very_slow(recent, period) {
            progress.report(
                &format!("install: download of {name} is very slow"),
                slow_fields(recent, period, job.deadline.remaining()),
            );
        }
    }

    /// The end of the body: a short one is truncated, else the file is flushed and the last
    /// progress line written.
    fn finish(
        self,
        job: &Download,
        out: &File,
        progress: &mut dyn Progress,
    ) -> Result<Downloaded, InstallError> {
        let (what, url, bytes) = (job.target.what, job.url, self.bytes);
        if let Some(expected) = self.expected.filter(|expected| bytes < *expected) {
            return Err(truncated(
                what,
                url,
                bytes,
                Some(expected),
                &"the connection closed early",
            ));
        }
        out.sync_all().map_err(|e| {
            local(format!(
                "{what}: cannot flush {} to disk ({e}); check the home folder's file system",
                job.file.display()
            ))
        })?;
        let sha256 = hex(&self.hasher.finalize());
        let mut fields = download_fields(bytes, Some(bytes), self.started.elapsed());
        fields.retain(|(key, _)| *key != "eta");
        fields.push(("sha256", sha256.clone()));
        progress.report(&format!("install: downloaded {}", job.asset.name), fields);
        Ok(Downloaded {
            bytes,
            sha256,
            from: url.to_owned(),
        })
    }
}

impl<'c> Client<'c> {
    /// A client for `api_url` (already validated by `config`). `token` is sent as a Bearer
    /// token to the API's own origin only; `trust` is the certificates HTTPS servers are
    /// checked against; `backoff` is the wait before each retry; when `cancel` becomes true,
    /// the current request stops at its next chunk or wait.
    pub fn new(
        api_url: &str,
        token: Option<String>,
        trust: &Trust,
        backoff: &[Duration],
        cancel: &'c AtomicBool,
    ) -> Client<'c> {
        let user_agent = format!("zeta-visor/{}", env!("CARGO_PKG_VERSION"));
        let api = Agent::config_builder()
            .tls_config(trust.tls_config())
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(user_agent.as_str())
            .timeout_global(Some(API_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build()
            .into();
        let download = Agent::config_builder()
            .tls_config(trust.tls_config())
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(user_agent.as_str())
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(API_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .build()
            .into();
        Client {
            api,
            download,
            api_url: api_url.trim_end_matches('/').to_owned(),
            api_origin: origin(api_url),
            token,
            trust: trust.source.clone(),
            backoff: backoff.to_vec(),
            cancel,
            download_timeout: crate::config::DEFAULT_DOWNLOAD_TIMEOUT,
            room: Room::size_only(crate::config::DEFAULT_MAX_DOWNLOAD_BYTES),
        }
    }

    /// Sets `maxDownloadBytes` and `minFreeBytes` for the downloads to files.
    pub fn with_room(mut self, room: Room) -> Client<'c> {
        self.room = room;
        self
    }

    /// Sets how long one asset download may take in all, retries included
    /// (`[autoInstall] downloadTimeoutSeconds`).
    pub fn with_download_timeout(mut self, limit: Duration) -> Client<'c> {
        self.download_timeout = limit;
        self
    }

    /// Where `asset` is downloaded from: with a token, its API `url` when that is on the API's
    /// origin (the only way to a private repository's assets); else its
    /// `browser_download_url`.
    pub fn asset_url<'a>(&self, asset: &'a Asset) -> &'a str {
        let api = asset.url.as_deref().filter(|url| {
            self.token.is_some()
                && self.api_origin.is_some()
                && check_url(url).ok() == self.api_origin
        });
        api.unwrap_or(&asset.browser_download_url)
    }

    /// The URL of release `tag` of `owner/repo`.
    pub fn release_url(&self, owner: &str, repo: &str, tag: &str) -> String {
        format!("{}/repos/{owner}/{repo}/releases/tags/{tag}", self.api_url)
    }

    /// Looks up release `tag` of `owner/repo`.
    pub fn release(
        &self,
        owner: &str,
        repo: &str,
        tag: &str,
        progress: &mut dyn Progress,
    ) -> Result<Release, InstallError> {
        let url = self.release_url(owner, repo, tag);
        let what = format!("release {tag} of {owner}/{repo}");
        let not_found = format!(
            "there is no published release {tag} in {owner}/{repo}; check the tag, and \
             repositoryOwner and repository in [autoInstall] of config.toml (a private \
             repository also needs GITHUB_TOKEN)"
        );
        let target = Target {
            what: &what,
            not_found: &not_found,
        };
        self.with_retries(&what, progress, None, &mut |_| {
            let response = self.get(&self.api, &url, API_ACCEPT, &target, None, Auth::ApiHops)?;
            let mut text = Vec::new();
            response
                .into_body()
                .into_reader()
                .take(MAX_RELEASE_JSON + 1)
                .read_to_end(&mut text)
                .map_err(|e| {
                    transient(format!(
                        "{what}: the answer from {url} broke off ({e}); this is usually a \
                         network problem"
                    ))
                })?;
            if text.len() as u64 > MAX_RELEASE_JSON {
                return Err(invalid(format!(
                    "{what}: the answer from {url} is larger than {} MiB; check apiUrl in \
                     [autoInstall] of config.toml",
                    MAX_RELEASE_JSON >> 20
                )));
            }
            serde_json::from_slice::<Release>(&text).map_err(|e| {
                invalid(format!(
                    "{what}: the answer from {url} is not a GitHub release ({e}); check apiUrl \
                     in [autoInstall] of config.toml"
                ))
            })
        })
    }

    /// Downloads a small asset (a checksum or signature file) into memory, refusing more than
    /// `limit` bytes.
    pub fn download_small(
        &self,
        asset: &Asset,
        what: &str,
        limit: u64,
        progress: &mut dyn Progress,
    ) -> Result<Vec<u8>, InstallError> {
        let url = self.asset_url(asset);
        let not_found = asset_not_found(&asset.name);
        let target = Target {
            what,
            not_found: &not_found,
        };
        let too_large = |size: u64| {
            invalid(format!(
                "{what}: {url} is {size} bytes, more than the {limit} bytes Visor reads for such \
                 a file; report it to the publisher, or check the file names in [autoInstall] of \
                 config.toml"
            ))
        };
        if let Some(size) = asset.size.filter(|size| *size > limit) {
            return Err(too_large(size));
        }
        let deadline = Deadline::new(self.download_timeout, what, url);
        self.with_retries(what, progress, Some(&deadline), &mut |_| {
            let response = self.get(
                &self.download,
                url,
                DOWNLOAD_ACCEPT,
                &target,
                Some(deadline.remaining()),
                Auth::FirstHop,
            )?;
            let announced = response.body().content_length();
            if let Some(size) = announced.filter(|size| *size > limit) {
                return Err(too_large(size));
            }
            let mut data = Vec::new();
            let read = response
                .into_body()
                .into_reader()
                .take(limit + 1)
                .read_to_end(&mut data);
            if data.len() as u64 > limit {
                return Err(too_large(data.len() as u64));
            }
            let expected = announced.or(asset.size);
            match (read, expected) {
                (Err(_), _) if deadline.passed() => {
                    Err(deadline.error(Some((data.len() as u64, expected))))
                }
                (Err(e), _) => Err(truncated(what, url, data.len() as u64, expected, &e)),
                (Ok(_), Some(expected)) if (data.len() as u64) < expected => Err(truncated(
                    what,
                    url,
                    data.len() as u64,
                    Some(expected),
                    &"the connection closed early",
                )),
                (Ok(_), _) => Ok(data),
            }
        })
    }

    /// Streams an asset into `file` (created or truncated), computing its SHA-256, with a
    /// progress line at least every [`PROGRESS_INTERVAL`] (and a second one when fewer than
    /// [`SLOW_RATE`] bytes per second arrived since the last) and one at the end. A body shorter
    /// than the asset's size or Content-Length is a transient failure and retried. The whole
    /// download, retries included, must finish within the client's download time limit, else
    /// it fails with [`InstallErrorKind::TimedOut`] and is not retried.
    pub fn download_to_file(
        &self,
        asset: &Asset,
        what: &str,
        file: &Path,
        progress: &mut dyn Progress,
    ) -> Result<Downloaded, InstallError> {
        let url = self.asset_url(asset);
        let not_found = asset_not_found(&asset.name);
        if let Some(size) = asset.size {
            self.room
                .check_size(what, "the release lists it at", size)?;
        }
        self.room.check_free(what, asset.size.unwrap_or(0))?;
        let job = Download {
            asset,
            url,
            file,
            target: Target {
                what,
                not_found: &not_found,
            },
            deadline: Deadline::new(self.download_timeout, what, url),
        };
        self.with_retries(what, progress, Some(&job.deadline), &mut |progress| {
            self.download_attempt(&job, progress)
        })
    }

    /// One attempt of [`Client::download_to_file`]: the file created, the response opened
    /// and its length compared with the release's, then the body streamed and finished.
    fn download_attempt(
        &self,
        job: &Download,
        progress: &mut dyn Progress,
    ) -> Result<Downloaded, InstallError> {
        let (what, url, file) = (job.target.what, job.url, job.file);
        let mut out = File::create(file).map_err(|e| {
            local(format!(
                "{what}: cannot create {} ({e}); check the permissions and free space of the \
                 home folder",
                file.display()
            ))
        })?;
        let response = self.get(
            &self.download,
            url,
            DOWNLOAD_ACCEPT,
            &job.target,
            Some(job.deadline.remaining()),
            Auth::FirstHop,
        )?;
        let announced = response.body().content_length();
        if let Some(announced) = announced {
            self.room.check_size(
                what,
                &format!("{url} announces (Content-Length)"),
                announced,
            )?;
            self.room.check_free(what, announced)?;
        }
        if let (Some(announced), Some(size)) = (announced, job.asset.size) {
            if announced != size {
                return Err(invalid(format!(
                    "{what}: {url} sends {announced} bytes but the release lists {size}; the \
                     asset or the mirror is inconsistent: report it to the publisher"
                )));
            }
        }
        let chunks = spawn_reader(response.into_body().into_reader()).map_err(|e| {
            local(format!(
                "{what}: cannot start a thread to read the download ({e}); check the system's \
                 process limits"
            ))
        })?;
        let mut transfer = Transfer::new(job.asset.size.or(announced), self.room.max_bytes);
        transfer.stream(self, job, &chunks, &mut out, progress)?;
        transfer.finish(job, &out, progress)
    }

    /// Runs `attempt` until it succeeds, fails for good, or has failed transiently once more
    /// than there are backoff entries; waits between attempts and says so in a progress line.
    /// With a `deadline`, no attempt starts or is retried once it has passed.
    fn with_retries<T>(
        &self,
        what: &str,
        progress: &mut dyn Progress,
        deadline: Option<&Deadline>,
        attempt: &mut dyn FnMut(&mut dyn Progress) -> Result<T, InstallError>,
    ) -> Result<T, InstallError> {
        let attempts = self.backoff.len() + 1;
        let mut number = 1;
        loop {
            self.check_cancel(what)?;
            if let Some(deadline) = deadline.filter(|d| d.passed()) {
                return Err(deadline.error(None));
            }
            let error = match attempt(&mut *progress) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if error.kind != InstallErrorKind::Transient {
                return Err(error);
            }
            // A connection or read that the deadline cut short is the deadline's failure.
            if let Some(deadline) = deadline.filter(|d| d.passed()) {
                return Err(deadline.error(None));
            }
            let Some(wait) = self.backoff.get(number - 1).copied() else {
                return Err(transient(format!(
                    "{}; gave up after {attempts} attempts: check the network, or try again \
                     later with visor prepare",
                    error.message
                )));
            };
            progress.report(
                &format!("install: {what} failed, retrying"),
                vec![
                    ("error", error.message),
                    ("attempt", format!("{number}/{attempts}")),
                    ("retry_in", format!("{} ms", wait.as_millis())),
                ],
            );
            let wait = deadline.map_or(wait, |d| wait.min(d.remaining()));
            self.sleep(wait, what)?;
            number += 1;
        }
    }

    /// Sleeps, waking early (with an error) when the install is cancelled.
    fn sleep(&self, wait: Duration, what: &str) -> Result<(), InstallError> {
        let until = Instant::now() + wait;
        loop {
            self.check_cancel(what)?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    /// An error when the install has been cancelled.
    fn check_cancel(&self, what: &str) -> Result<(), InstallError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(interrupted(what))
        } else {
            Ok(())
        }
    }

    /// One GET, following redirects hop by hop; returns a 2xx response, or the error its
    /// status or failure means. `budget` bounds each hop, its body included; `auth` says which
    /// hops carry the token.
    fn get(
        &self,
        agent: &Agent,
        url: &str,
        accept: &str,
        target: &Target,
        budget: Option<Duration>,
        auth: Auth,
    ) -> Result<Response<Body>, InstallError> {
        let what = target.what;
        let mut current = url.to_owned();
        for hop in 0..=MAX_REDIRECTS {
            let may_authorize = auth == Auth::ApiHops || hop == 0;
            let response = self.hop(agent, &current, accept, what, budget, may_authorize)?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(response);
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                current = redirect_target(what, &current, status, &response)?;
                continue;
            }
            return Err(self.answer_error(target, &current, status, response));
        }
        Err(invalid(format!(
            "{what}: {url} redirected more than {MAX_REDIRECTS} times; check apiUrl in \
             [autoInstall] of config.toml"
        )))
    }

    /// One request of [`Client::get`], to a URL checked first; the token goes only to the
    /// API's own origin, and only when `may_authorize`.
    fn hop(
        &self,
        agent: &Agent,
        url: &str,
        accept: &str,
        what: &str,
        budget: Option<Duration>,
        may_authorize: bool,
    ) -> Result<Response<Body>, InstallError> {
        let here = check_url(url).map_err(|why| {
            invalid(format!(
                "{what}: refusing to fetch {url}: {why}; an asset must be served over https:// \
                 (http:// only from a loopback host)"
            ))
        })?;
        let mut request = agent
            .get(url)
            .header("Accept", accept)
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(token) = self.token.as_ref().filter(|_| may_authorize) {
            if self.api_origin.as_ref() == Some(&here) {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
        }
        if let Some(budget) = budget {
            request = request.config().timeout_global(Some(budget)).build();
        }
        request
            .call()
            .map_err(|e| request_error(what, url, &here.host, &self.trust, &e))
    }

    /// The error a non-2xx, non-redirect answer means, with GitHub's own message from its
    /// body when it gives one.
    fn answer_error(
        &self,
        target: &Target,
        url: &str,
        status: u16,
        response: Response<Body>,
    ) -> InstallError {
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let _ = response
            .into_body()
            .into_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut body);
        status_error(
            target,
            url,
            status,
            &headers,
            &body,
            self.token.is_some(),
            unix_now(),
        )
    }
}

/// Where a redirect answer from `current` points, resolved against it; an error when it has
/// no usable `Location`.
fn redirect_target(
    what: &str,
    current: &str,
    status: u16,
    response: &Response<Body>,
) -> Result<String, InstallError> {
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    location
        .as_deref()
        .and_then(|location| resolve_location(current, location))
        .ok_or_else(|| {
            invalid(format!(
                "{what}: {current} answered {status} with no usable Location ({}); check apiUrl \
                 in [autoInstall] of config.toml",
                location.as_deref().unwrap_or("none")
            ))
        })
}

/// Reads a body on its own short-lived thread and hands it over in chunks (an empty chunk is
/// the end), at most [`QUEUED_CHUNKS`] ahead. The thread ends at the end of the body, on a read
/// error or timeout, or at its next chunk once the receiver is dropped.
fn spawn_reader(
    mut reader: BodyReader<'static>,
) -> std::io::Result<Receiver<std::io::Result<Vec<u8>>>> {
    let (chunks, received) = sync_channel(QUEUED_CHUNKS);
    std::thread::Builder::new()
        .name("visor-download".to_owned())
        .spawn(move || loop {
            let mut buffer = vec![0u8; CHUNK];
            match reader.read(&mut buffer) {
                Ok(n) => {
                    buffer.truncate(n);
                    if chunks.send(Ok(buffer)).is_err() || n == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = chunks.send(Err(e));
                    return;
                }
            }
        })?;
    Ok(received)
}

/// The advice for a 404 on an asset download.
fn asset_not_found(name: &str) -> String {
    format!(
        "the release lists {name} but it cannot be downloaded; try again later, or report it to \
         the publisher"
    )
}

/// The fields of a download progress line: bytes, total, rate and estimated time left.
fn download_fields(
    bytes: u64,
    total: Option<u64>,
    elapsed: Duration,
) -> Vec<(&'static str, String)> {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = bytes as f64 / seconds;
    let mut fields = vec![
        ("bytes", bytes.to_string()),
        (
            "total",
            total.map_or_else(|| "unknown".to_owned(), |t| t.to_string()),
        ),
        ("rate", format!("{}/s", human_bytes(rate))),
    ];
    let eta = match total {
        Some(total) if rate > 0.0 => format!("{:.0} s", total.saturating_sub(bytes) as f64 / rate),
        _ => "unknown".to_owned(),
    };
    fields.push(("eta", eta));
    fields.push(("seconds", format!("{seconds:.1}")));
    fields
}

/// Whether `bytes` received over `period` is below [`SLOW_RATE`] per second.
fn is_very_slow(bytes: u64, period: Duration) -> bool {
    (bytes as f64) < SLOW_RATE as f64 * period.as_secs_f64()
}

/// The fields of a "very slow" line: the recent rate and when the download limit runs out.
fn slow_fields(bytes: u64, period: Duration, left: Duration) -> Vec<(&'static str, String)> {
    let rate = bytes as f64 / period.as_secs_f64().max(0.001);
    vec![
        ("recent_rate", format!("{}/s", human_bytes(rate))),
        ("fails_in", format!("{} s", left.as_secs())),
        (
            "advice",
            "check the network, or raise downloadTimeoutSeconds in [autoInstall] if it is only \
             slow"
                .to_owned(),
        ),
    ]
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[0])
    } else {
        format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B"))
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the epoch, now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A body that ended (or broke) before all its bytes arrived.
fn truncated(
    what: &str,
    url: &str,
    bytes: u64,
    expected: Option<u64>,
    why: &dyn std::fmt::Display,
) -> InstallError {
    let of = expected.map_or_else(String::new, |e| format!(" of {e}"));
    transient(format!(
        "{what}: the download from {url} was truncated after {bytes}{of} bytes ({why}); this is \
         usually a network problem"
    ))
}

/// The error a failed request (no HTTP answer) means; `host` is the URL's host and `trust`
/// where the trusted certificates come from, for a refused certificate.
fn request_error(
    what: &str,
    url: &str,
    host: &str,
    trust: &str,
    error: &ureq::Error,
) -> InstallError {
    if let Some(problem) = certificate_problem(error) {
        return certificate_error(what, url, host, trust, problem);
    }
    match error {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => invalid(format!(
            "{what}: cannot request {url} ({error}); check apiUrl in [autoInstall] of \
             config.toml, or report the release's asset URL to the publisher"
        )),
        ureq::Error::InvalidProxyUrl => local(format!(
            "{what}: cannot request {url}: the proxy set in the environment (HTTPS_PROXY, \
             ALL_PROXY or HTTP_PROXY) is not a valid URL; fix or unset it"
        )),
        _ => transient(format!(
            "{what}: cannot reach {url} ({error}); this is usually a network problem"
        )),
    }
}

/// The certificate problem behind a failed TLS handshake, if that is what failed.
fn certificate_problem(error: &ureq::Error) -> Option<&rustls::CertificateError> {
    let tls = match error {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match tls {
        Some(rustls::Error::InvalidCertificate(problem)) => Some(problem),
        _ => None,
    }
}

/// The error a server certificate Visor refuses means. Not retried: it fails the same way
/// until the trust store, the URL or the clock changes.
fn certificate_error(
    what: &str,
    url: &str,
    host: &str,
    trust: &str,
    problem: &rustls::CertificateError,
) -> InstallError {
    use rustls::CertificateError as Problem;
    let refused =
        format!("{what}: refusing the TLS certificate of {host} ({problem}) while fetching {url}");
    match problem {
        Problem::NotValidForName | Problem::NotValidForNameContext { .. } => invalid(format!(
            "{refused}: it is not made out to {host}; check the host in apiUrl in \
             [autoInstall] of config.toml, or a proxy in Visor's environment that answers for it"
        )),
        Problem::Expired
        | Problem::ExpiredContext { .. }
        | Problem::NotValidYet
        | Problem::NotValidYetContext { .. } => local(format!(
            "{refused}: the certificate is expired or not yet valid; check this machine's clock, \
             or tell the operator of {host}"
        )),
        _ => local(format!(
            "{refused}: it is not signed by a CA Visor trusts, which are those of {trust}; if \
             {host} uses a private or company CA, set caFile in [autoInstall] of config.toml, \
             or SSL_CERT_FILE in Visor's environment, to a PEM file holding that CA's \
             certificate"
        )),
    }
}

/// The error an HTTP status other than 2xx or a redirect means. `now` is seconds since the
/// epoch, to say when a rate limit resets.
fn status_error(
    target: &Target,
    url: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    token_set: bool,
    now: u64,
) -> InstallError {
    let what = target.what;
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let said = github_message(body)
        .filter(|message| !message.eq_ignore_ascii_case(reason))
        .map_or_else(String::new, |message| format!(": {message}"));
    let answered = format!("{what}: {url} answered {status} {reason}{said}");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    match status {
        404 | 410 => not_found(format!("{answered}; {}", target.not_found)),
        401 => {
            let advice = if token_set {
                "GITHUB_TOKEN is set but GitHub rejected it: renew it, or unset it for a public \
                 repository"
            } else {
                "the repository needs credentials: set GITHUB_TOKEN in Visor's environment"
            };
            forbidden(format!("{answered}; {advice}"))
        }
        403 | 429 => {
            let mut limit = String::new();
            if let Some(remaining) = header("x-ratelimit-remaining") {
                limit.push_str(&format!(", {remaining} requests left"));
            }
            if let Some(reset) = header("x-ratelimit-reset").and_then(|r| r.parse::<u64>().ok()) {
                let at = crate::ops::log::rfc3339_millis(reset.saturating_mul(1000));
                limit.push_str(&format!(
                    ", it resets at {} (UTC), in {} s",
                    at.trim_end_matches(".000Z").to_owned() + "Z",
                    reset.saturating_sub(now)
                ));
            }
            if let Some(after) = header("retry-after") {
                limit.push_str(&format!(", retry after {after} s"));
            }
            let advice = if token_set {
                "GITHUB_TOKEN is set: check that it may read the repository, or wait for the \
                 limit to reset and try again"
            } else {
                "set GITHUB_TOKEN in Visor's environment for a higher limit, or wait for the \
                 limit to reset and try again"
            };
            forbidden(format!(
                "{answered}; this is usually GitHub's API rate limit{limit}; {advice}"
            ))
        }
        408 | 500..=599 => transient(format!(
            "{answered}; the server is having trouble, this is usually temporary"
        )),
        _ => invalid(format!(
            "{answered}; unexpected answer, check apiUrl in [autoInstall] of config.toml"
        )),
    }
}

/// GitHub's `message` from an error body, on one line and at most 200 characters.
fn github_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value.get("message")?.as_str()?;
    let mut line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line = line.trim().trim_end_matches('.').to_owned();
    (!line.is_empty()).then_some(line)
}

/// Resolves a redirect's `Location` against the URL that answered: absolute URLs stay,
/// `//host/path` takes the scheme, `/path` the origin, and anything else the folder.
pub fn resolve_location(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    let scheme_end = base.find("://")?;
    let scheme = base.get(..scheme_end)?;
    let after_scheme = base.get(scheme_end + 3..)?;
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = after_scheme.get(..authority_end)?;
    let has_scheme = location.split_once("://").is_some_and(|(s, _)| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if has_scheme {
        return Some(location.to_owned());
    }
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let path = after_scheme.get(authority_end..)?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let folder = path.rfind('/').and_then(|i| path.get(..=i)).unwrap_or("/");
    Some(format!("{scheme}://{authority}{folder}{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target<'static> {
        Target {
            what: "release v2 of o/r",
            not_found: "check the tag",
        }
    }

    #[test]
    fn redirect_locations_resolve_like_a_browser() {
        let base = "https://github.com/o/r/releases/download/v2/zeta.zip?x=1";
        assert_eq!(
            resolve_location(base, "https://objects.example.com/a?b=c").as_deref(),
            Some("https://objects.example.com/a?b=c")
        );
        assert_eq!(
            resolve_location(base, "//cdn.example.com/a").as_deref(),
            Some("https://cdn.example.com/a")
        );
        assert_eq!(
            resolve_location(base, "/other").as_deref(),
            Some("https://github.com/other")
        );
        assert_eq!(
            resolve_location(base, "sibling.zip").as_deref(),
            Some("https://github.com/o/r/releases/download/v2/sibling.zip")
        );
        assert_eq!(
            resolve_location("http://127.0.0.1:5", "x").as_deref(),
            Some("http://127.0.0.1:5/x")
        );
        assert_eq!(resolve_location(base, "  "), None);
        assert_eq!(resolve_location("nonsense", "x"), None);
    }

    #[test]
    fn statuses_map_to_kinds_with_advice() {
        let mut headers = HeaderMap::new();
        let error = status_error(&target(), "https://a/x", 404, &headers, b"", false, 0);
        assert_eq!(error.kind, InstallErrorKind::NotFound);
        assert_eq!(
            error.message,
            "release v2 of o/r: https://a/x answered 404 Not Found; check the tag"
        );

        headers.insert("x-ratelimit-reset", "1795553400".parse().unwrap());
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let body = br#"{"message":"API rate limit exceeded for 1.2.3.4.\n(see docs)"}"#;
        let error = status_error(
            &target(),
            "https://a/x",
            403,
            &headers,
            body,
            false,
            1_795_553_340,
        );
        assert_eq!(error.kind, InstallErrorKind::Forbidden);
        assert!(error.message.contains("403 Forbidden: API rate limit exceeded for 1.2.3.4. (see docs); this is usually GitHub's API rate limit, 0 requests left, it resets at 2026-11-24T20:50:00Z (UTC), in 60 s; set GITHUB_TOKEN"), "{}", error.message);
        let error = status_error(&target(), "https://a/x", 429, &headers, b"", true, 0);
        assert_eq!(error.kind, InstallErrorKind::Forbidden);
        assert!(
            error.message.contains("GITHUB_TOKEN is set"),
            "{}",
            error.message
        );
        let error = status_error(
            &target(),
            "https://a/x",
            401,
            &HeaderMap::new(),
            b"",
            false,
            0,
        );
        assert_eq!(error.kind, InstallErrorKind::Forbidden);
        for status in [500, 502, 503, 408] {
            let error = status_error(&target(), "u", status, &HeaderMap::new(), b"", false, 0);
            assert_eq!(error.kind, InstallErrorKind::Transient, "{status}");
        }
        let error = status_error(&target(), "u", 418, &HeaderMap::new(), b"<html>", false, 0);
        assert_eq!(error.kind, InstallErrorKind::Invalid);
        assert!(!error.message.ends_with('.'));
    }

    #[test]
    fn progress_fields_have_rate_and_eta() {
        let fields = download_fields(1 << 20, Some(4 << 20), Duration::from_secs(1));
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("bytes"), "1048576");
        assert_eq!(get("total"), "4194304");
        assert_eq!(get("rate"), "1.0 MiB/s");
        assert_eq!(get("eta"), "3 s");
        let fields = download_fields(10, None, Duration::ZERO);
        assert!(fields.iter().any(|(k, v)| *k == "eta" && v == "unknown"));
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
    }

    #[test]
    fn slow_means_under_one_kib_per_second_over_the_period() {
        let period = Duration::from_secs(5);
        assert!(is_very_slow(0, period));
        assert!(is_very_slow(5 * 1024 - 1, period));
        assert!(!is_very_slow(5 * 1024, period));
        let fields = slow_fields(512, Duration::from_secs(1), Duration::from_secs(90));
        assert_eq!(fields[0], ("recent_rate", "512 B/s".to_owned()));
        assert_eq!(fields[1], ("fails_in", "90 s".to_owned()));
    }

    #[test]
    fn the_deadline_error_names_the_url_and_the_key() {
        let deadline = Deadline::new(
            Duration::from_secs(7),
            "release v2 asset a.zip",
            "https://example.com/a.zip",
        );
        let error = deadline.error(Some((10, Some(20))));
        assert_eq!(error.kind, InstallErrorKind::TimedOut);
        assert_eq!(
            error.message,
            "release v2 asset a.zip: the download from https://example.com/a.zip did not finish \
             within downloadTimeoutSeconds = 7 and was stopped after 10 of 20 bytes; raise \
             downloadTimeoutSeconds in [autoInstall] of config.toml for a large asset on a slow \
             link, or check the network"
        );
        assert!(!deadline.passed());
        let never = Deadline::new(Duration::MAX, "x", "y");
        assert!(!never.passed());
    }

    #[test]
    fn with_a_token_assets_come_through_the_api_url() {
        let cancel = AtomicBool::new(false);
        let trust = Trust::built_in();
        let asset = Asset {
            name: "a.zip".to_owned(),
            url: Some("https://api.example.com/repos/o/r/releases/assets/7".to_owned()),
            browser_download_url: "https://example.com/o/r/releases/download/v2/a.zip".to_owned(),
            content_type: None,
            size: None,
            digest: None,
        };
        let api = "https://api.example.com";
        let client = Client::new(api, Some("t".to_owned()), &trust, &[], &cancel);
        assert_eq!(client.asset_url(&asset), asset.url.as_deref().unwrap());
        // Without a token the public download URL; an API URL elsewhere is not trusted with it.
        let client = Client::new(api, None, &trust, &[], &cancel);
        assert_eq!(client.asset_url(&asset), asset.browser_download_url);
        let elsewhere = Asset {
            url: Some("https://evil.example.com/repos/o/r/releases/assets/7".to_owned()),
            ..asset.clone()
        };
        let client = Client::new(api, Some("t".to_owned()), &trust, &[], &cancel);
        assert_eq!(client.asset_url(&elsewhere), asset.browser_download_url);
        let none = Asset {
            url: None,
            ..asset.clone()
        };
        assert_eq!(client.asset_url(&none), asset.browser_download_url);
    }

    #[test]
    fn refused_certificates_name_the_host_and_what_to_trust() {
        let error = certificate_error(
            "release v2 of o/r",
            "https://ghe.example.com/api/v3/x",
            "ghe.example.com",
            "the system's trust store /etc/ssl/certs/ca-certificates.crt (140 certificates)",
            &rustls::CertificateError::UnknownIssuer,
        );
        assert_eq!(error.kind, InstallErrorKind::Local);
        assert!(
            error.message.starts_with(
                "release v2 of o/r: refusing the TLS certificate of ghe.example.com ("
            ),
            "{}",
            error.message
        );
        assert!(
            error.message.contains(
                "it is not signed by a CA Visor trusts, which are those of the system's trust \
                 store /etc/ssl/certs/ca-certificates.crt (140 certificates); if ghe.example.com \
                 uses a private or company CA, set caFile in [autoInstall] of config.toml, or \
                 SSL_CERT_FILE in Visor's environment"
            ),
            "{}",
            error.message
        );
        let error = certificate_error(
            "w",
            "https://h/x",
            "h",
            "t",
            &rustls::CertificateError::NotValidForName,
        );
        assert_eq!(error.kind, InstallErrorKind::Invalid);
        assert!(
            error.message.contains("check the host in apiUrl"),
            "{}",
            error.message
        );
        let error = certificate_error("w", "u", "h", "t", &rustls::CertificateError::Expired);
        assert!(error.message.contains("clock"), "{}", error.message);
        // Other failures are not certificate problems.
        let io = ureq::Error::Io(std::io::Error::other("connection refused"));
        assert!(certificate_problem(&io).is_none());
        let tls = ureq::Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert_eq!(
            certificate_problem(&tls),
            Some(&rustls::CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn release_json_parses_with_optional_fields() {
        let text = r#"{"tag_name":"v2","draft":false,"assets":[
            {"name":"a.zip","url":"https://api/x/1","browser_download_url":"https://d/a.zip",
             "content_type":"application/zip","size":10,"digest":"sha256:00"},
            {"name":"b","browser_download_url":"https://d/b","digest":null}]}"#;
        let release: Release = serde_json::from_str(text).unwrap();
        assert_eq!(release.tag_name, "v2");
        assert_eq!(release.assets.len(), 2);
        assert_eq!(release.assets[0].size, Some(10));
        assert_eq!(release.assets[1].digest, None);
        assert_eq!(release.assets[1].content_type, None);
    }
}
