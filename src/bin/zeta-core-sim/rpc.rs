//! The gorilla/rpc v1 JSON codec and the core's `protocolupgrade.UpgradeStatus` method: the
//! request decoded as Go decodes it, its error texts, and the JSON answer as Go encodes it.

use crate::answers::Answer;
use crate::cli::Announce;
use crate::go_encode::{compact_json, go_json_string, go_quote};
use crate::go_json::{
    first_json_value, json_kind, json_unquote, skip_json_space, skip_json_string, skip_json_value,
};

/// The fields of gorilla/rpc's JSON `serverRequest` that matter.
#[derive(Debug, Default, PartialEq, Eq)]
struct ServerRequest {
    method: String,
    /// The raw `params` value; `None` when missing or null.
    params: Option<Vec<u8>>,
    /// The raw `id` value; `None` when missing or null.
    id: Option<Vec<u8>>,
}

/// Go matches JSON object keys to struct fields without regard to case, folding the Kelvin sign
/// and long s as well.
fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212a}' => 'k',
            '\u{17f}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Decodes the first JSON value of a request body into a `serverRequest` the way Go's decoder
/// does, returning the error text gorilla/rpc would send.
fn decode_server_request(body: &[u8]) -> Result<ServerRequest, String> {
    let v = first_json_value(body)?;
    let mut request = ServerRequest::default();
    match v.first().copied().unwrap_or(b'n') {
        b'n' => return Ok(request),
        b'{' => {}
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type json.serverRequest",
                json_kind(other)
            ))
        }
    }
    let mut first_error = None;
    let mut i = 1;
    loop {
        skip_json_space(v, &mut i);
        if i >= v.len() || v[i] == b'}' {
            break;
        }
        if v[i] == b',' {
            i += 1;
            continue;
        }
        let key_start = i;
        skip_json_string(v, &mut i);
        let key = json_unquote(v.get(key_start..i.min(v.len())).unwrap_or_default());
        skip_json_space(v, &mut i);
        i += 1; // The colon.
        skip_json_space(v, &mut i);
        let value_start = i;
        skip_json_value(v, &mut i);
        if i <= key_start {
            break;
        }
        let value = v.get(value_start..i.min(v.len())).unwrap_or_default();
        let first = value.first().copied().unwrap_or(b'n');
        match fold_key(&key).as_str() {
            "method" => match first {
                b'"' => request.method = json_unquote(value),
                b'n' => {}
                other => {
                    first_error.get_or_insert_with(|| {
                        format!(
                            "json: cannot unmarshal {} into Go struct field serverRequest.method of type string",
                            json_kind(other)
                        )
                    });
                }
            },
            "params" => request.params = (first != b'n').then(|| value.to_vec()),
            "id" => request.id = (first != b'n').then(|| value.to_vec()),
            _ => {}
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(request),
    }
}

/// The service and method the simulated core registers.
const RPC_SERVICE: &str = "protocolupgrade";
const RPC_METHOD: &str = "UpgradeStatus";

/// gorilla/rpc's lookup of `Service.Method`.
fn find_method(method: &str) -> Result<(), String> {
    let parts: Vec<&str> = method.split('.').collect();
    if parts.len() != 2 {
        return Err(format!(
            "rpc: service/method request ill-formed: {}",
            go_quote(method)
        ));
    }
    if parts[0] != RPC_SERVICE {
        return Err(format!("rpc: can't find service {}", go_quote(method)));
    }
    if parts[1] != RPC_METHOD {
        return Err(format!("rpc: can't find method {}", go_quote(method)));
    }
    Ok(())
}

/// The codec's `ReadRequest`: `params` is unmarshalled into
/// `[1]interface{}{&ReadForUpgradeArgs{}}`, the argument type of the core's method.
fn read_params(params: Option<&[u8]>) -> Result<(), String> {
    let Some(p) = params else {
        return Err("rpc: method request ill-formed: missing params field".to_string());
    };
    let first = p.first().copied().unwrap_or(b'n');
    if first != b'[' {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type [1]interface {{}}",
            json_kind(first)
        ));
    }
    let mut i = 1;
    skip_json_space(p, &mut i);
    match p.get(i) {
        None | Some(b']' | b'n' | b'{') => Ok(()),
        Some(&other) => Err(format!(
            "json: cannot unmarshal {} into Go value of type admin.ReadForUpgradeArgs",
            json_kind(other)
        )),
    }
}

/// The core's upgrade status at the moment of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpgradeStatus {
    pub(crate) accepted: Option<Announce>,
    pub(crate) ready: bool,
}

/// What gorilla/rpc does with a request that reached the RPC handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcOutcome {
    /// 400 with this text.
    Error(String),
    /// A request without an id: 200 and an empty body.
    Notification,
    /// 200 with this JSON body (newline included).
    Success(Vec<u8>),
}

/// Runs the gorilla/rpc JSON codec and the `protocolupgrade.UpgradeStatus` method.
pub(crate) fn rpc_outcome(body: &[u8], status: &UpgradeStatus, tag_field: &str) -> RpcOutcome {
    let request = match decode_server_request(body) {
        Ok(request) => request,
        Err(error) => return RpcOutcome::Error(error),
    };
    if let Err(error) = find_method(&request.method) {
        return RpcOutcome::Error(error);
    }
    if let Err(error) = read_params(request.params.as_deref()) {
        return RpcOutcome::Error(error);
    }
    let Some(id) = request.id else {
        return RpcOutcome::Notification;
    };
    RpcOutcome::Success(status_body(status, tag_field, &compact_json(&id)))
}

/// The JSON answer of `protocolupgrade.UpgradeStatus`, as Go's `json.Encoder` writes it.
fn status_body(status: &UpgradeStatus, tag_field: &str, id: &[u8]) -> Vec<u8> {
    let info = match &status.accepted {
        Some(a) => format!(
            "{{{}:{},\"UpgradeBlockHeight\":{}}}",
            go_json_string(tag_field),
            go_json_string(&a.tag),
            a.height
        ),
        None => "null".to_string(),
    };
    let mut body = format!(
        "{{\"result\":{{\"AcceptedReleaseInfo\":{info},\"ReadyToUpgrade\":{}}},\"error\":null,\"id\":",
        status.ready
    )
    .into_bytes();
    body.extend_from_slice(id);
    body.extend_from_slice(b"}\n");
    body
}

/// The body `--garble-rpc` sends in place of a JSON answer.
const GARBLED_BODY: &[u8] = b"{\"result\":{\"AcceptedReleaseInfo\":nul garbled, this is not JSON\n";

/// The content type of gorilla/rpc's JSON answers.
const APPLICATION_JSON: &str = "application/json; charset=utf-8";

/// Turns an RPC outcome into an HTTP answer.
pub(crate) fn rpc_answer(outcome: RpcOutcome, garble: bool, chunked: bool) -> Answer {
    match outcome {
        RpcOutcome::Error(error) => Answer::rpc_error(400, &error),
        RpcOutcome::Notification => Answer {
            status: 200,
            headers: vec![("X-Content-Type-Options", "nosniff".to_string())],
            body: Vec::new(),
            chunked: false,
        },
        RpcOutcome::Success(body) => Answer {
            status: 200,
            headers: vec![
                ("Content-Type", APPLICATION_JSON.to_string()),
                ("X-Content-Type-Options", "nosniff".to_string()),
            ],
            body: if garble { GARBLED_BODY.to_vec() } else { body },
            chunked,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answers::{serialize, Framing};
    use crate::test_support::{status, text, DATE};
    use serde_json::Value;

    #[test]
    fn server_request_fields() {
        let req = decode_server_request(
            br#"{"METHOD":"protocolupgrade.UpgradeStatus","Params":[null],"iD": 7 ,"x":{"y":[1,"}"]}}"#,
        )
        .expect("valid");
        assert_eq!(req.method, "protocolupgrade.UpgradeStatus");
        assert_eq!(req.params.as_deref(), Some(&b"[null]"[..]));
        assert_eq!(req.id.as_deref(), Some(&b"7"[..]));

        let req = decode_server_request(
            br#"{"\u006dethod":"a\u00e9\ud83d\ude00\ud800","id":null,"params":null}"#,
        )
        .expect("valid");
        assert_eq!(req.method, "a\u{e9}\u{1f600}\u{fffd}");
        assert_eq!(req.id, None);
        assert_eq!(req.params, None);

        assert_eq!(decode_server_request(b"null"), Ok(ServerRequest::default()));
        assert_eq!(
            decode_server_request(b"[1]").unwrap_err(),
            "json: cannot unmarshal array into Go value of type json.serverRequest"
        );
        assert_eq!(
            decode_server_request(b"\"x\"").unwrap_err(),
            "json: cannot unmarshal string into Go value of type json.serverRequest"
        );
        assert_eq!(
            decode_server_request(br#"{"method":5,"id":1}"#).unwrap_err(),
            "json: cannot unmarshal number into Go struct field serverRequest.method of type string"
        );
        assert_eq!(
            decode_server_request(br#"{"method":{},"method":"a.b"}"#).unwrap_err(),
            "json: cannot unmarshal object into Go struct field serverRequest.method of type string"
        );
        // A method of null leaves the field empty.
        assert_eq!(
            decode_server_request(br#"{"method":null}"#).map(|r| r.method),
            Ok(String::new())
        );
        // Bad UTF-8 becomes one U+FFFD per byte.
        let mut body = b"{\"method\":\"a".to_vec();
        body.extend_from_slice(&[0xe2, 0x82, b'b', 0xff]);
        body.extend_from_slice(b"\"}");
        assert_eq!(
            decode_server_request(&body).map(|r| r.method),
            Ok("a\u{fffd}\u{fffd}b\u{fffd}".to_string())
        );
    }

    #[test]
    fn method_lookup() {
        assert_eq!(find_method("protocolupgrade.UpgradeStatus"), Ok(()));
        assert_eq!(
            find_method("protocolupgrade.Nope").unwrap_err(),
            "rpc: can't find method \"protocolupgrade.Nope\""
        );
        assert_eq!(
            find_method("wallet.UpgradeStatus").unwrap_err(),
            "rpc: can't find service \"wallet.UpgradeStatus\""
        );
        assert_eq!(
            find_method("UpgradeStatus").unwrap_err(),
            "rpc: service/method request ill-formed: \"UpgradeStatus\""
        );
        assert_eq!(
            find_method("").unwrap_err(),
            "rpc: service/method request ill-formed: \"\""
        );
        assert_eq!(
            find_method("a.b.c\n\u{e9}\u{200b}").unwrap_err(),
            "rpc: service/method request ill-formed: \"a.b.c\\n\u{e9}\\u200b\""
        );
    }

    #[test]
    fn params_shapes() {
        assert_eq!(
            read_params(None).unwrap_err(),
            "rpc: method request ill-formed: missing params field"
        );
        for ok in ["[null]", "[]", "[ {\"x\":[1]} ]", "[null,5]"] {
            assert_eq!(read_params(Some(ok.as_bytes())), Ok(()), "{ok}");
        }
        assert_eq!(
            read_params(Some(b"{}")).unwrap_err(),
            "json: cannot unmarshal object into Go value of type [1]interface {}"
        );
        assert_eq!(
            read_params(Some(b"5")).unwrap_err(),
            "json: cannot unmarshal number into Go value of type [1]interface {}"
        );
        assert_eq!(
            read_params(Some(b"[\"x\"]")).unwrap_err(),
            "json: cannot unmarshal string into Go value of type admin.ReadForUpgradeArgs"
        );
        assert_eq!(
            read_params(Some(b"[[1]]")).unwrap_err(),
            "json: cannot unmarshal array into Go value of type admin.ReadForUpgradeArgs"
        );
    }

    #[test]
    fn upgrade_status_answers() {
        let body = br#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":42}"#;
        assert_eq!(
            rpc_outcome(body, &status(Some(("v1.3.0", 1_200_000)), false), "VegaReleaseTag"),
            RpcOutcome::Success(
                b"{\"result\":{\"AcceptedReleaseInfo\":{\"VegaReleaseTag\":\"v1.3.0\",\"UpgradeBlockHeight\":1200000},\"ReadyToUpgrade\":false},\"error\":null,\"id\":42}\n".to_vec()
            )
        );
        assert_eq!(
            rpc_outcome(body, &status(None, false), "VegaReleaseTag"),
            RpcOutcome::Success(
                b"{\"result\":{\"AcceptedReleaseInfo\":null,\"ReadyToUpgrade\":false},\"error\":null,\"id\":42}\n".to_vec()
            )
        );
        let body =
            br#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":{ "k" : "<" }}"#;
        assert_eq!(
            rpc_outcome(body, &status(Some(("v2", 5)), true), "ZetaReleaseTag"),
            RpcOutcome::Success(
                b"{\"result\":{\"AcceptedReleaseInfo\":{\"ZetaReleaseTag\":\"v2\",\"UpgradeBlockHeight\":5},\"ReadyToUpgrade\":true},\"error\":null,\"id\":{\"k\":\"\\u003c\"}}\n".to_vec()
            )
        );
        let none = status(None, false);
        let outcome = |body: &str| rpc_outcome(body.as_bytes(), &none, "VegaReleaseTag");
        assert_eq!(
            outcome(r#"{"method":"protocolupgrade.UpgradeStatus","params":[null]}"#),
            RpcOutcome::Notification
        );
        assert_eq!(
            outcome(r#"{"method":"protocolupgrade.UpgradeStatus","params":[null],"id":null}"#),
            RpcOutcome::Notification
        );
        assert_eq!(
            outcome(r#"{"method":"protocolupgrade.UpgradeStatus","id":1}"#),
            RpcOutcome::Error("rpc: method request ill-formed: missing params field".into())
        );
        // The method is checked before the params.
        assert_eq!(
            outcome(r#"{"method":"protocolupgrade.X","id":1}"#),
            RpcOutcome::Error("rpc: can't find method \"protocolupgrade.X\"".into())
        );
        assert_eq!(
            outcome("not json"),
            RpcOutcome::Error("invalid character 'o' in literal null (expecting 'u')".into())
        );
    }

    #[test]
    fn rpc_answers_as_http() {
        let answer = rpc_answer(RpcOutcome::Success(b"{}\n".to_vec()), false, false);
        assert_eq!(
            text(&serialize(&answer, Framing { http11: true, ..Framing::default() }, DATE).0),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 3\r\n\r\n{}\n"
        );
        let answer = rpc_answer(RpcOutcome::Notification, false, false);
        assert_eq!(
            text(&serialize(&answer, Framing { http11: true, ..Framing::default() }, DATE).0),
            "HTTP/1.1 200 OK\r\nX-Content-Type-Options: nosniff\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: 0\r\n\r\n"
        );
        let answer = rpc_answer(RpcOutcome::Success(b"{}\n".to_vec()), true, false);
        assert!(serde_json::from_slice::<Value>(&answer.body).is_err());
    }
}
