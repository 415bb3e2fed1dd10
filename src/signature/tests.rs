//! The formats and the verification, with keys and signatures made at test time by the
//! integration tests' signer.

use super::test_signer::{base64, Signer};
use super::*;

fn named(file: &str, text: &str) -> Named {
    Named {
        file: file.to_owned(),
        parsed: SignatureFile::parse(text.as_bytes()),
    }
}

fn key(signer: &Signer) -> PublicKey {
    PublicKey::parse(&signer.public_key()).unwrap()
}

/// The lines of a signature file, to change one.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn joined(lines: &[String]) -> String {
    format!("{}\n", lines.join("\n"))
}

#[test]
fn key_ids_are_shown_as_minisign_prints_them() {
    // The 8 bytes as a little-endian number.
    let id = KeyId([0x1f, 0xe8, 0xb4, 0x42, 0x18, 0x0f, 0x62, 0xe7]);
    assert_eq!(id.to_string(), "E7620F1842B4E81F");
    let signer = Signer::generate();
    let parsed = key(&signer);
    assert_eq!(parsed.id().to_string(), signer.key_id());
    assert_eq!(parsed.text(), signer.public_key());
    // Without leading zeros, as minisign's `%" PRIX64` (1 key in 16 has one): the id in a
    // `.pub` file's comment is `E5A6AB71AABFF81`, never `0E5A6AB71AABFF81`.
    let id = KeyId([0x81, 0xff, 0xab, 0x1a, 0xb7, 0x6a, 0x5a, 0x0e]);
    assert_eq!(id.to_string(), "E5A6AB71AABFF81");
}

#[test]
fn public_keys_refuse_bad_base64_lengths_and_algorithms() {
    let good = Signer::generate().public_key();
    assert!(good.starts_with("RW"), "{good}");
    let error = PublicKey::parse(&good.replace('R', "*")).unwrap_err();
    assert!(error.starts_with("not base64: character '*'"), "{error}");
    let error = PublicKey::parse(&good[..52]).unwrap_err();
    assert!(error.contains("39 bytes once decoded"), "{error}");
    let error = PublicKey::parse(&format!("{good}\n")).unwrap_err();
    assert!(error.starts_with("not base64"), "{error}");
    let mut bytes = base64::decode(&good).unwrap();
    bytes[1] = b'D';
    let error = PublicKey::parse(&base64(&bytes)).unwrap_err();
    assert!(error.contains("its algorithm is \"ED\""), "{error}");
    bytes[0] = 0;
    let error = PublicKey::parse(&base64(&bytes)).unwrap_err();
    assert!(error.contains("its algorithm is 0044"), "{error}");
    // The first line of a .pub file is not the key.
    let error = PublicKey::parse("untrusted comment: minisign public key ABC").unwrap_err();
    assert!(error.starts_with("not base64"), "{error}");
}

#[test]
fn signature_files_parse_and_refuse_what_minisign_would_not_write() {
    let signer = Signer::generate();
    let text = signer.sign(b"data", "timestamp:1\tfile:zeta.zip");
    let parsed = SignatureFile::parse(text.as_bytes()).unwrap();
    assert_eq!(parsed.key_id().to_string(), signer.key_id());
    assert_eq!(parsed.mode(), Mode::Prehashed);
    assert_eq!(parsed.trusted_comment(), "timestamp:1\tfile:zeta.zip");
    let legacy = SignatureFile::parse(signer.sign_legacy(b"data", "c").as_bytes()).unwrap();
    assert_eq!(legacy.mode(), Mode::Legacy);
    // CRLF line ends read the same.
    let crlf = text.replace('\n', "\r\n");
    let parsed = SignatureFile::parse(crlf.as_bytes()).unwrap();
    assert_eq!(parsed.trusted_comment(), "timestamp:1\tfile:zeta.zip");

    let error = |text: &str| SignatureFile::parse(text.as_bytes()).unwrap_err();
    let four = lines(&text);
    assert!(error(&joined(&four[..2])).contains("ends before its third"));
    assert!(error("").contains("ends before its second"));
    let mut changed = four.clone();
    changed[0] = "comment: x".to_owned();
    assert!(error(&joined(&changed)).contains("first line does not start"));
    let mut changed = four.clone();
    changed[2] = "comment: x".to_owned();
    assert!(error(&joined(&changed)).contains("third line does not start"));
    let mut changed = four.clone();
    changed[1].insert(3, '!');
    assert!(error(&joined(&changed)).starts_with("its second line is"));
    let mut changed = four.clone();
    changed[3] = base64(&[0u8; 63]);
    assert!(error(&joined(&changed)).contains("fourth line holds 63 bytes"));
    let mut changed = four.clone();
    changed.push("more".to_owned());
    assert!(error(&joined(&changed)).contains("text follows the fourth line"));
    let mut bytes = base64::decode(&four[1]).unwrap();
    bytes[..2].copy_from_slice(b"Xy");
    let mut changed = four.clone();
    changed[1] = base64(&bytes);
    let message = error(&joined(&changed));
    assert!(message.contains("its algorithm is \"Xy\""), "{message}");
    changed[1] = base64(&bytes[..70]);
    assert!(error(&joined(&changed)).contains("holds 70 bytes"));
    assert!(SignatureFile::parse(&[0xff, 0xfe])
        .unwrap_err()
        .contains("UTF-8"));
    let huge = vec![b'a'; MAX_SIGNATURE_FILE as usize + 1];
    assert!(SignatureFile::parse(&huge)
        .unwrap_err()
        .contains("more than"));
}

#[test]
fn good_signatures_count_once_per_configured_key() {
    let (alice, bob, mallory) = (Signer::generate(), Signer::generate(), Signer::generate());
    let keys = [key(&alice), key(&bob)];
    let data = b"the release";
    let files = [
        named("a.minisig", &alice.sign(data, "alice\tsigned")),
        named("a2.minisig", &alice.sign_legacy(data, "alice again")),
        named("m.minisig", &mallory.sign(data, "mallory")),
        named("junk.minisig", "junk"),
    ];
    assert_eq!(possible_keys(&keys, &files), BTreeSet::from([keys[0].id()]));
    let verdicts = check_data(&keys, &files, data);
    assert_eq!(
        verdicts[0].outcome,
        Outcome::Good {
            key: keys[0].id(),
            comment: "alice\tsigned".to_owned()
        }
    );
    assert!(matches!(verdicts[1].outcome, Outcome::Good { .. }));
    assert_eq!(verdicts[2].outcome, Outcome::OtherKey(key(&mallory).id()));
    assert!(matches!(verdicts[3].outcome, Outcome::Unreadable(_)));
    let mut tally = Tally {
        threshold: 2,
        verdicts,
    };
    assert_eq!(tally.good_keys().len(), 1, "alice counts once");
    assert!(!tally.met());
    let found = tally.found_keys();
    assert!(found.contains(&alice.key_id()) && found.contains(&mallory.key_id()));
    assert!(!found.contains(&bob.key_id()));
    let described = tally.describe();
    assert!(
        described.contains(&format!(
            "m.minisig: by key {}, which is not in publicKeys",
            mallory.key_id()
        )),
        "{described}"
    );
    assert!(
        described.contains("junk.minisig: it ends before"),
        "{described}"
    );
    tally.verdicts.extend(check_data(
        &keys,
        &[named("b", &bob.sign(data, "bob"))],
        data,
    ));
    assert!(tally.met());
    assert_eq!(tally.good_keys().len(), 2);
}

#[test]
fn changed_data_comments_and_key_ids_fail() {
    let (alice, bob) = (Signer::generate(), Signer::generate());
    let keys = [key(&alice), key(&bob)];
    let text = alice.sign(b"data", "timestamp:1");
    let failed = |files: &[Named], data: &[u8]| {
        let verdicts = check_data(&keys, files, data);
        match &verdicts[0].outcome {
            Outcome::Failed { key, why } => (*key, why.clone()),
            other => panic!("expected a failure, got {other:?}"),
        }
    };
    // Other data.
    let (key_id, why) = failed(&[named("s", &text)], b"dat4");
    assert_eq!(key_id, keys[0].id());
    assert!(why.contains("does not verify"), "{why}");
    // The trusted comment changed: the global signature fails.
    let changed = text.replace("timestamp:1", "timestamp:2");
    failed(&[named("s", &changed)], b"data");
    // Legacy, with a changed comment too.
    let legacy = alice.sign_legacy(b"data", "c1");
    failed(&[named("s", &legacy)], b"dat4");
    failed(&[named("s", &legacy.replace("c1", "c2"))], b"data");
    // Alice's signature presented as Bob's: the key id no longer matches the signature.
    let mut four = lines(&text);
    let mut bytes = base64::decode(&four[1]).unwrap();
    bytes[2..10].copy_from_slice(&base64::decode(&bob.public_key()).unwrap()[2..10]);
    four[1] = base64(&bytes);
    let (key_id, _) = failed(&[named("s", &joined(&four))], b"data");
    assert_eq!(key_id, keys[1].id());
}

#[test]
fn data_fed_in_pieces_verifies_like_data_in_one_piece() {
    let alice = Signer::generate();
    let keys = [key(&alice)];
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let files = [
        named("p", &alice.sign(&data, "prehashed")),
        named("l", &alice.sign_legacy(&data, "legacy")),
    ];
    let mut check = StreamCheck::new(&keys, &files);
    assert!(check.needs_data());
    for piece in data.chunks(65_536) {
        check.update(piece);
    }
    let verdicts = check.finish();
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(v.outcome, Outcome::Good { .. })),
        "{verdicts:?}"
    );
    assert_eq!(verdicts, check_data(&keys, &files, &data));
    let none = [named("m", &Signer::generate().sign(&data, "x"))];
    assert!(!StreamCheck::new(&keys, &none).needs_data());
}

#[test]
fn legacy_signatures_over_large_data_fail_saying_why() {
    let alice = Signer::generate();
    let keys = [key(&alice)];
    let data = vec![7u8; MAX_LEGACY_BYTES + 1];
    let files = [
        named("l", &alice.sign_legacy(&data, "legacy")),
        named("p", &alice.sign(&data, "prehashed")),
    ];
    let mut check = StreamCheck::new(&keys, &files);
    for piece in data.chunks(1 << 20) {
        check.update(piece);
    }
    let verdicts = check.finish();
    match &verdicts[0].outcome {
        Outcome::Failed { why, .. } => assert!(why.contains("prehashed"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(verdicts[1].outcome, Outcome::Good { .. }));
}

#[test]
fn trusted_comments_are_bounded() {
    assert_eq!(shown_comment("a\tb"), "a\tb");
    let long = "x".repeat(MAX_COMMENT_SHOWN + 10);
    let shown = shown_comment(&long);
    assert_eq!(shown.len(), MAX_COMMENT_SHOWN + 3);
    assert!(shown.ends_with("..."));
    let wide = "é".repeat(MAX_COMMENT_SHOWN);
    assert_eq!(shown_comment(&wide), wide);
    assert_eq!(shown_comment(&format!("{wide}é")), format!("{wide}..."));
}
