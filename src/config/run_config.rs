//! A version folder's `run-config.toml`: the `RunConfig` type, its parser with line-numbered
//! messages, its serialisation back to TOML, and the commented template that `visor init` writes.
//!
//! Binary paths are resolved against the run-config's own folder here and nowhere else; nothing
//! is looked up in PATH and no other path is resolved.
//!
//! This module must not log and does no IO except reading the one file named to
//! `RunConfig::load`; it does not check that binaries or sockets exist.

use std::path::{Component, Path, PathBuf};

use crate::config::doc::{self, key_path, Entry, Report};

/// The manual page that documents run-config.toml, named in messages about unknown keys.
const MANUAL: &str = "visor-config(5)";

/// The longest socket path the kernel accepts in a UNIX socket address, in bytes.
const MAX_SOCKET_PATH: usize = 107;

/// The contents of one folder's run-config.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The file this was read from; relative binary paths are resolved against its folder.
    pub file: PathBuf,
    /// `name`: the version this folder runs.
    pub name: String,
    /// `[zeta.binary]` (or `[vega.binary]`): the core node.
    pub core: Binary,
    /// `[zeta.rpc]` (or `[vega.rpc]`): where the core answers the admin RPC.
    pub rpc: RpcTarget,
    /// `[data_node.binary]`, when a data node is configured.
    pub data_node: Option<Binary>,
}

/// A binary to run and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// The path to execute: a relative configured path joined to the run-config's folder.
    pub path: PathBuf,
    /// The path as written in the file.
    pub configured_path: String,
    /// `args`, empty when absent.
    pub args: Vec<String>,
}

/// The core node's admin RPC endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcTarget {
    /// `socketPath`, as written (a relative path is not resolved).
    pub socket_path: PathBuf,
    /// `httpPath`, starting with `/`.
    pub http_path: String,
}

/// The keys allowed at the top level of run-config.toml.
const TOP_KEYS: &[&str] = &["name", "zeta", "vega", "data_node"];

/// The keys allowed in `[zeta]` or `[vega]`.
const CORE_KEYS: &[&str] = &["binary", "rpc"];

/// The keys allowed in `[data_node]`.
const DATA_NODE_KEYS: &[&str] = &["binary"];

/// The keys allowed in a `binary` table.
const BINARY_KEYS: &[&str] = &["path", "args"];

/// The keys allowed in an `rpc` table.
const RPC_KEYS: &[&str] = &["socketPath", "httpPath"];

impl RunConfig {
    /// Parses run-config.toml text. `file` is where it was read from: messages name it and
    /// relative binary paths are joined to its folder.
    ///
    /// On failure every problem found is returned, one message per problem.
    pub fn parse(file: &Path, text: &str) -> Result<RunConfig, Vec<String>> {
        let root = doc::parse(file, text).map_err(|message| vec![message])?;
        let mut rep = Report::new(file, text, MANUAL);
        let mut name = None;
        let mut name_seen = false;
        let mut zeta = None;
        let mut vega = None;
        let mut data_node_entry = None;
        for entry in &root {
            match entry.key.as_str() {
                "name" => {
                    name_seen = true;
                    name = parse_name(&mut rep, entry);
                }
                "zeta" => zeta = Some(entry),
                "vega" => vega = Some(entry),
                "data_node" => data_node_entry = Some(entry),
                _ => rep.unknown(entry, "", TOP_KEYS),
            }
        }
        if !name_seen {
            rep.missing(
                "",
                "name",
                "set it to the version this folder runs, e.g. name = \"v1.2.3\"",
            );
        }
        let core = match (zeta, vega) {
            (Some(zeta), Some(vega)) => {
                // Both are checked, so that their other problems are reported too.
                parse_core(&mut rep, file, zeta);
                parse_core(&mut rep, file, vega);
                let later = match (zeta.span(), vega.span()) {
                    (Some(z), Some(v)) if z.start > v.start => zeta,
                    _ => vega,
                };
                rep.error(
                    &later.span(),
                    &later.key,
                    "both [zeta] and its alias [vega] are present; keep only one of them",
                );
                None
            }
            (Some(section), None) | (None, Some(section)) => parse_core(&mut rep, file, section),
            (None, None) => {
                rep.missing(
                    "",
                    "[zeta]",
                    "add a [zeta] section (or its alias [vega]) with [zeta.binary] path and \
                     [zeta.rpc] socketPath and httpPath",
                );
                None
            }
        };
        let data_node = match data_node_entry {
            Some(entry) => parse_data_node(&mut rep, file, entry).map(Some),
            None => Some(None),
        };
        match (name, core, data_node) {
            (Some(name), Some((core, rpc)), Some(data_node)) => rep.finish(RunConfig {
                file: file.to_path_buf(),
                name,
                core,
                rpc,
                data_node,
            }),
            // Whatever is missing was reported; `finish` with errors returns them.
            _ => rep.finish(()).and_then(|()| {
                Err(vec![format!(
                    "{}: incomplete run configuration; see {MANUAL}",
                    file.display()
                )])
            }),
        }
    }

    /// Reads and parses the file; a read error is one message naming the file and what to do.
    pub fn load(file: &Path) -> Result<RunConfig, Vec<String>> {
        let text = doc::read(
            file,
            "create it (see visor-config(5)) or map the release to another folder in \
             [upgradeFolders]",
        )?;
        RunConfig::parse(file, &text)
    }

    /// Serialises back to run-config.toml text using the `[zeta]` section and the configured
    /// (unresolved) paths, such that parsing the result with the same `file` gives `self` back.
    pub fn to_toml(&self) -> String {
        let mut out = format!("name = {}\n\n[zeta]\n", doc::quote(&self.name));
        push_binary(&mut out, "zeta", &self.core);
        out.push_str(&format!(
            "  [zeta.rpc]\n    socketPath = {}\n    httpPath = {}\n",
            doc::quote(&self.rpc.socket_path.to_string_lossy()),
            doc::quote(&self.rpc.http_path),
        ));
        if let Some(data_node) = &self.data_node {
            out.push_str("\n[data_node]\n");
            push_binary(&mut out, "data_node", data_node);
        }
        out
    }
}

/// Appends a `[<section>.binary]` table.
fn push_binary(out: &mut String, section: &str, binary: &Binary) {
    out.push_str(&format!(
        "  [{section}.binary]\n    path = {}\n    args = {}\n",
        doc::quote(&binary.configured_path),
        toml_array(&binary.args),
    ));
}

/// Writes strings as a one-line TOML array.
fn toml_array(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| doc::quote(item)).collect();
    format!("[{}]", items.join(", "))
}

/// Reads `name`: a non-empty string.
fn parse_name(rep: &mut Report, entry: &Entry) -> Option<String> {
    let todo = "set it to the version this folder runs, e.g. name = \"v1.2.3\"";
    let name = rep.string(entry, "", todo)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        let what = format!(
            "{} is empty or has control characters; {todo}",
            doc::quote(name)
        );
        rep.error(&entry.value_span(), &entry.key, &what);
        return None;
    }
    Some(name.to_owned())
}

/// Reads `[zeta]` or `[vega]`: the core's binary and RPC tables.
fn parse_core(rep: &mut Report, file: &Path, entry: &Entry) -> Option<(Binary, RpcTarget)> {
    let section = entry.key.as_str();
    let table = rep.table(entry, "")?;
    let mut binary = None;
    let mut rpc = None;
    for item in table {
        match item.key.as_str() {
            "binary" => binary = Some(item),
            "rpc" => rpc = Some(item),
            _ => rep.unknown(item, section, CORE_KEYS),
        }
    }
    let binary = parse_binary(rep, file, section, binary, "the core node's binary");
    let rpc = parse_rpc(rep, section, rpc);
    Some((binary?, rpc?))
}

/// Reads `[data_node]`: its binary table.
fn parse_data_node(rep: &mut Report, file: &Path, entry: &Entry) -> Option<Binary> {
    let section = entry.key.as_str();
    let table = rep.table(entry, "")?;
    let mut binary = None;
    for item in table {
        match item.key.as_str() {
            "binary" => binary = Some(item),
            _ => rep.unknown(item, section, DATA_NODE_KEYS),
        }
    }
    parse_binary(
        rep,
        file,
        section,
        binary,
        "the data node's binary, or remove [data_node]",
    )
}

/// Reads `[<section>.binary]`, which may be absent (then its required path is reported missing);
/// `what` names the binary in the advice.
fn parse_binary(
    rep: &mut Report,
    file: &Path,
    section: &str,
    entry: Option<&Entry>,
    what: &str,
) -> Option<Binary> {
    let table_path = key_path(section, "binary");
    let table = match entry {
        Some(entry) => rep.table(entry, section)?,
        None => &[],
    };
    let mut path = None;
    let mut path_seen = false;
    let mut args = Some(Vec::new());
    for item in table {
        match item.key.as_str() {
            "path" => {
                path_seen = true;
                let todo = format!("set the path of {what}, e.g. path = \"zeta\"");
                path = rep.string(item, &table_path, &todo).and_then(|value| {
                    if value.is_empty() || value.contains('\0') {
                        let what = format!("empty or holds a NUL character; {todo}");
                        rep.error(&item.value_span(), &key_path(&table_path, "path"), &what);
                        None
                    } else {
                        Some(value.to_owned())
                    }
                });
            }
            "args" => args = rep.strings(item, &table_path),
            _ => rep.unknown(item, &table_path, BINARY_KEYS),
        }
    }
    if !path_seen {
        rep.missing(&table_path, "path", &format!("set the path of {what}"));
    }
    let configured_path = path?;
    Some(Binary {
        path: resolve(file, &configured_path),
        configured_path,
        args: args?,
    })
}

/// Reads `[<section>.rpc]`, which may be absent (then both its keys are reported missing).
fn parse_rpc(rep: &mut Report, section: &str, entry: Option<&Entry>) -> Option<RpcTarget> {
    let table_path = key_path(section, "rpc");
    let table = match entry {
        Some(entry) => rep.table(entry, section)?,
        None => &[],
    };
    let socket_todo = "set the path of the core node's admin socket";
    let http_todo = "set the HTTP path of the core node's admin RPC, e.g. httpPath = \"/rpc\"";
    let mut socket_path = None;
    let mut http_path = None;
    let (mut socket_seen, mut http_seen) = (false, false);
    for item in table {
        let path = key_path(&table_path, &item.key);
        match item.key.as_str() {
            "socketPath" => {
                socket_seen = true;
                let Some(value) = rep.string(item, &table_path, socket_todo) else {
                    continue;
                };
                let problem = if value.is_empty() {
                    Some("empty path".to_owned())
                } else if value.contains('\0') {
                    Some("the path holds a NUL character".to_owned())
                } else if value.len() > MAX_SOCKET_PATH {
                    Some(format!(
                        "the path is {} bytes long, more than the {MAX_SOCKET_PATH} a UNIX socket \
                         address can hold",
                        value.len()
                    ))
                } else {
                    None
                };
                match problem {
                    Some(problem) => {
                        let what = format!("{problem}; {socket_todo}");
                        rep.error(&item.value_span(), &path, &what);
                    }
                    None => socket_path = Some(PathBuf::from(value)),
                }
            }
            "httpPath" => {
                http_seen = true;
                let Some(value) = rep.string(item, &table_path, http_todo) else {
                    continue;
                };
                if !value.starts_with('/') {
                    let what =
                        format!("{} does not start with '/'; {http_todo}", doc::quote(value));
                    rep.error(&item.value_span(), &path, &what);
                } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    let what = format!(
                        "{} contains whitespace or control characters, which an HTTP request \
                         line cannot carry; {http_todo}",
                        doc::quote(value)
                    );
                    rep.error(&item.value_span(), &path, &what);
                } else {
                    http_path = Some(value.to_owned());
                }
            }
            _ => rep.unknown(item, &table_path, RPC_KEYS),
        }
    }
    if !socket_seen {
        rep.missing(&table_path, "socketPath", socket_todo);
    }
    if !http_seen {
        rep.missing(&table_path, "httpPath", http_todo);
    }
    Some(RpcTarget {
        socket_path: socket_path?,
        http_path: http_path?,
    })
}

/// Resolves a configured binary path: an absolute path stays as it is; a relative one, even a
/// bare name, is joined to the folder of the run-config file, dropping `.` components.
fn resolve(file: &Path, configured: &str) -> PathBuf {
    let configured = Path::new(configured);
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    let mut path = file.parent().unwrap_or_else(|| Path::new("")).to_path_buf();
    for component in configured.components() {
        if component != Component::CurDir {
            path.push(component);
        }
    }
    path
}

/// The run-config.toml that `visor init` writes into genesis/ (and, with name "vX.X.X", into the
/// example folder), commented; `with_data_node` adds a `[data_node]` section.
pub fn run_config_template(name: &str, with_data_node: bool) -> String {
    let mut out = format!(
        r#"# Run configuration of one version of Zeta; see visor-config(5).
# Visor reads this file when it starts this folder's binaries, so an upgrade folder can be
# prepared while another version runs.

# The version this folder runs, shown by `visor status` and in the metrics.
name = {}

# The core node. [vega] is accepted instead of [zeta], so Vega visor folders work unchanged.
[zeta]
  [zeta.binary]
    # The core node's binary. A relative path, even a bare name, is relative to this file's
    # folder; PATH is not searched.
    path = "zeta"
    # The arguments it is started with.
    args = ["start", "--home", "/var/lib/zeta"]
  [zeta.rpc]
    # The core node's admin socket, where Visor asks for the upgrade status. /run/zeta is
    # the folder the systemd unit creates for the zeta user (RuntimeDirectory=zeta).
    socketPath = "/run/zeta/core.sock"
    # The HTTP path of the admin JSON-RPC endpoint on that socket.
    httpPath = "/rpc"
"#,
        doc::quote(name)
    );
    if with_data_node {
        out.push_str(
            r#"
# The data node, started, stopped and upgraded together with the core node.
[data_node]
  [data_node.binary]
    # The data node's binary; relative paths work as for the core node.
    path = "zeta"
    # The arguments it is started with.
    args = ["datanode", "start", "--home", "/var/lib/zeta"]
"#,
        );
    } else {
        out.push_str(
            r#"
# To run a data node together with the core node, add:
# [data_node]
#   [data_node.binary]
#     path = "zeta"
#     args = ["datanode", "start", "--home", "/var/lib/zeta"]
"#,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/srv/visor/genesis/run-config.toml";

    fn parse(text: &str) -> Result<RunConfig, Vec<String>> {
        RunConfig::parse(Path::new(FILE), text)
    }

    fn ok(text: &str) -> RunConfig {
        match parse(text) {
            Ok(run) => run,
            Err(errors) => panic!("expected a run-config, got {errors:#?}"),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(run) => panic!("expected errors, parsed {run:?}"),
            Err(errors) => errors,
        }
    }

    fn one_error(text: &str) -> String {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap_or_default()
    }

    const RUN_CONFIG_EXAMPLE: &str = r#"name = "v1.2.3"
[zeta]                       # alias: [vega], so Vega visor home folders work unchanged
  [zeta.binary]
    path = "zeta"            # relative paths are relative to this file's folder
    args = ["start", "--home", "/var/lib/zeta"]
  [zeta.rpc]
    socketPath = "/var/run/zeta.sock"
    httpPath = "/rpc"
[data_node]                  # optional
  [data_node.binary]
    path = "zeta"
    args = ["datanode", "start", "--home", "/var/lib/zeta"]
"#;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn spec_example_parses() {
        let expected = RunConfig {
            file: PathBuf::from(FILE),
            name: "v1.2.3".to_owned(),
            core: Binary {
                path: PathBuf::from("/srv/visor/genesis/zeta"),
                configured_path: "zeta".to_owned(),
                args: strings(&["start", "--home", "/var/lib/zeta"]),
            },
            rpc: RpcTarget {
                socket_path: PathBuf::from("/var/run/zeta.sock"),
                http_path: "/rpc".to_owned(),
            },
            data_node: Some(Binary {
                path: PathBuf::from("/srv/visor/genesis/zeta"),
                configured_path: "zeta".to_owned(),
                args: strings(&["datanode", "start", "--home", "/var/lib/zeta"]),
            }),
        };
        assert_eq!(parse(RUN_CONFIG_EXAMPLE), Ok(expected));
    }

    #[test]
    fn vega_alias_and_defaults() {
        let text = "name = \"genesis\"\n[vega.binary]\npath = \"/usr/bin/vega\"\n\
                    [vega.rpc]\nsocketPath = \"vega.sock\"\nhttpPath = \"/rpc\"\n";
        let run = ok(text);
        assert_eq!(run.name, "genesis");
        assert_eq!(run.core.path, PathBuf::from("/usr/bin/vega"));
        assert_eq!(run.core.configured_path, "/usr/bin/vega");
        assert!(run.core.args.is_empty());
        // A relative socket path is kept as written.
        assert_eq!(run.rpc.socket_path, PathBuf::from("vega.sock"));
        assert_eq!(run.data_node, None);
        // Serialising writes [zeta], which parses to the same value.
        assert!(run.to_toml().contains("[zeta.binary]"));
        assert_eq!(parse(&run.to_toml()), Ok(run));
    }

    #[test]
    fn binary_paths_are_resolved_against_the_folder() {
        let cases = [
            ("zeta", "/srv/visor/genesis/zeta"),
            ("./zeta", "/srv/visor/genesis/zeta"),
            ("bin/./zeta", "/srv/visor/genesis/bin/zeta"),
            ("../shared/zeta", "/srv/visor/genesis/../shared/zeta"),
            ("/opt/zeta/bin/zeta", "/opt/zeta/bin/zeta"),
        ];
        for (configured, resolved) in cases {
            let text = RUN_CONFIG_EXAMPLE.replacen(
                "path = \"zeta\"",
                &format!("path = \"{configured}\""),
                1,
            );
            let run = ok(&text);
            assert_eq!(run.core.path, PathBuf::from(resolved), "{configured}");
            assert_eq!(run.core.configured_path, configured);
        }
        assert_eq!(
            resolve(Path::new("run-config.toml"), "zeta"),
            PathBuf::from("zeta")
        );
    }

    #[test]
    fn to_toml_round_trips() {
        let mut run = ok(RUN_CONFIG_EXAMPLE);
        assert_eq!(parse(&run.to_toml()), Ok(run.clone()));
        run.name = "v1.3.0 \"odd\" \\ name\u{e9}".to_owned();
        run.core.args = strings(&["a b", "--x=\"y\"", "tab\there", ""]);
        run.data_node = None;
        assert_eq!(parse(&run.to_toml()), Ok(run));
    }

    #[test]
    fn templates_parse() {
        let plain = ok(&run_config_template("genesis", false));
        assert_eq!(plain.name, "genesis");
        assert_eq!(plain.core.configured_path, "zeta");
        assert_eq!(
            plain.core.args,
            strings(&["start", "--home", "/var/lib/zeta"])
        );
        assert_eq!(plain.rpc.socket_path, PathBuf::from("/run/zeta/core.sock"));
        assert_eq!(plain.rpc.http_path, "/rpc");
        assert_eq!(plain.data_node, None);
        let with = ok(&run_config_template("vX.X.X", true));
        assert_eq!(with.name, "vX.X.X");
        let data_node = with.data_node.unwrap_or_else(|| panic!("no data node"));
        assert_eq!(data_node.args[0], "datanode");
        assert_eq!(data_node.path, PathBuf::from("/srv/visor/genesis/zeta"));
    }

    #[test]
    fn both_or_neither_section_is_an_error() {
        let both = format!("{RUN_CONFIG_EXAMPLE}\n[vega.binary]\npath = \"vega\"\n[vega.rpc]\nsocketPath = \"s\"\nhttpPath = \"/rpc\"\n");
        let error = one_error(&both);
        assert_eq!(
            error,
            "/srv/visor/genesis/run-config.toml:14: vega: both [zeta] and its alias [vega] are \
             present; keep only one of them"
        );
        let error = one_error("name = \"v1\"\n");
        assert_eq!(
            error,
            "/srv/visor/genesis/run-config.toml: [zeta]: missing; add a [zeta] section (or its \
             alias [vega]) with [zeta.binary] path and [zeta.rpc] socketPath and httpPath"
        );
    }

    #[test]
    fn missing_required_keys_name_table_and_key() {
        let errors = errors("[zeta]\n[zeta.binary]\nargs = []\n");
        assert_eq!(
            errors,
            [
                "/srv/visor/genesis/run-config.toml: name: missing; set it to the version this \
                 folder runs, e.g. name = \"v1.2.3\"",
                "/srv/visor/genesis/run-config.toml: [zeta.binary] path: missing; set the path of \
                 the core node's binary",
                "/srv/visor/genesis/run-config.toml: [zeta.rpc] socketPath: missing; set the path \
                 of the core node's admin socket",
                "/srv/visor/genesis/run-config.toml: [zeta.rpc] httpPath: missing; set the HTTP \
                 path of the core node's admin RPC, e.g. httpPath = \"/rpc\"",
            ]
        );
        let text = RUN_CONFIG_EXAMPLE.replace(
            "    path = \"zeta\"\n    args = [\"datanode\"",
            "    args = [\"datanode\"",
        );
        let error = one_error(&text);
        assert_eq!(
            error,
            "/srv/visor/genesis/run-config.toml: [data_node.binary] path: missing; set the path \
             of the data node's binary, or remove [data_node]"
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let error =
            one_error(&RUN_CONFIG_EXAMPLE.replace("httpPath = \"/rpc\"", "httpPath = \"rpc\""));
        assert_eq!(
            error,
            "/srv/visor/genesis/run-config.toml:8: zeta.rpc.httpPath: \"rpc\" does not start with \
             '/'; set the HTTP path of the core node's admin RPC, e.g. httpPath = \"/rpc\""
        );
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace("name = \"v1.2.3\"", "name = \"\""));
        assert!(
            error.starts_with("/srv/visor/genesis/run-config.toml:1: name: \"\" is empty"),
            "{error}"
        );
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace("name = \"v1.2.3\"", "name = 1"));
        assert!(
            error.starts_with(
                "/srv/visor/genesis/run-config.toml:1: name: expected a string in quotes, found 1"
            ),
            "{error}"
        );
        let error = one_error(&RUN_CONFIG_EXAMPLE.replacen("path = \"zeta\" ", "path = \"\" ", 1));
        assert!(
            error.starts_with("/srv/visor/genesis/run-config.toml:4: zeta.binary.path: empty"),
            "{error}"
        );
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace("\"/var/run/zeta.sock\"", "5"));
        assert!(error.starts_with("/srv/visor/genesis/run-config.toml:7: zeta.rpc.socketPath: expected a string in quotes, found 5"), "{error}");
        let long = format!("\"/{}\"", "s".repeat(107));
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace("\"/var/run/zeta.sock\"", &long));
        assert!(
            error.contains(":7: zeta.rpc.socketPath: the path is 108 bytes long"),
            "{error}"
        );
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace(
            "args = [\"start\", \"--home\", \"/var/lib/zeta\"]",
            "args = [\n  \"start\",\n  5,\n]",
        ));
        assert!(error.starts_with("/srv/visor/genesis/run-config.toml:7: zeta.binary.args[1]: expected a string in quotes, found 5"), "{error}");
        let error = one_error(&RUN_CONFIG_EXAMPLE.replace(
            "args = [\"start\", \"--home\", \"/var/lib/zeta\"]",
            "args = \"start\"",
        ));
        assert!(error.starts_with("/srv/visor/genesis/run-config.toml:5: zeta.binary.args: expected an array of strings, found \"start\""), "{error}");
        let error = one_error("name = \"v1\"\nzeta = 3\n");
        assert!(error.starts_with("/srv/visor/genesis/run-config.toml:2: zeta: expected a table, found 3; write it as a [zeta] section"), "{error}");
        let error = one_error("name = \"v1\"\n[zeta]\nbinary = \"zeta\"\n[zeta.rpc]\nsocketPath = \"/s\"\nhttpPath = \"/\"\n");
        assert!(error.starts_with("/srv/visor/genesis/run-config.toml:3: zeta.binary: expected a table, found \"zeta\"; write it as a [zeta.binary] section"), "{error}");
    }

    #[test]
    fn unknown_keys_anywhere_name_key_and_line() {
        let text = r#"name = "v1"
version = 2
[zeta]
extra = true
  [zeta.binary]
    path = "zeta"
    argz = []
  [zeta.rpc]
    socketPath = "/s"
    httpPath = "/rpc"
    timeout = 5
[data_node]
  enabled = true
  [data_node.binary]
    path = "zeta"
    env = {}
"#;
        let errors = errors(text);
        let places: Vec<String> = errors
            .iter()
            .map(|e| e.split(": ").take(3).collect::<Vec<_>>().join(": "))
            .collect();
        assert_eq!(
            places,
            [
                "/srv/visor/genesis/run-config.toml:2: version: unknown key; remove it or check its spelling (see visor-config(5))",
                "/srv/visor/genesis/run-config.toml:4: zeta.extra: unknown key; remove it or check its spelling (see visor-config(5))",
                "/srv/visor/genesis/run-config.toml:7: zeta.binary.argz: unknown key; remove it or check its spelling, did you mean args? (see visor-config(5))",
                "/srv/visor/genesis/run-config.toml:11: zeta.rpc.timeout: unknown key; remove it or check its spelling (see visor-config(5))",
                "/srv/visor/genesis/run-config.toml:13: data_node.enabled: unknown key; remove it or check its spelling (see visor-config(5))",
                "/srv/visor/genesis/run-config.toml:16: data_node.binary.env: unknown key; remove it or check its spelling (see visor-config(5))",
            ]
        );
    }

    #[test]
    fn syntax_error_is_one_message_with_line_and_column() {
        let error = one_error("name = \"v1\"\n[zeta\n");
        assert!(
            error.starts_with("/srv/visor/genesis/run-config.toml:2:"),
            "{error}"
        );
        assert!(error.contains("TOML syntax error"), "{error}");
    }

    #[test]
    fn load_reports_a_missing_file() {
        let missing = Path::new("/nonexistent/visor-test/v9.9.9/run-config.toml");
        let errors = RunConfig::load(missing).err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("/nonexistent/visor-test/v9.9.9/run-config.toml: no such file; ")
        );
    }
}
