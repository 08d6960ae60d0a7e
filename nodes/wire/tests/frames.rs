//! Style rule 7: the wire format is pinned. `fixtures/frames-v{N}.toml` holds the postcard
//! bytes of one value of every frame and message of wire version N (and the envelope
//! header the nodes authenticate); the test checks that each fixture of the current
//! version decodes to that value and that encoding the value today gives the same bytes.
//! A host and nodes of different builds speak the same `WIRE_VERSION`, so these bytes must
//! not change without a new one. The fixtures of older versions are kept: each old frame
//! either still decodes to the same value (its type did not change) or is refused.
//!
//! A frame added on purpose: add its value below, then write the current version's file
//! again with `CUSTOS_WRITE_FIXTURES=1 .ci/cargo test --workspace --test frames` and check
//! the diff only adds lines. A new wire version: a new file, written the same way.

use custos_wire::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::PathBuf;

fn fixture(version: u16) -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join(format!("tests/fixtures/frames-v{version}.toml"))
}

fn read_fixture(version: u16) -> toml::Table {
    std::fs::read_to_string(fixture(version))
        .unwrap()
        .parse()
        .unwrap()
}

const SESSION: SessionId = [
    0x5e, 0x55, 0x10, 0x4e, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
];

fn envelope(algo: Algo, broadcast: bool) -> Envelope {
    Envelope {
        session: SESSION,
        algo,
        round: 3,
        part: 2,
        from: 1,
        to: 4,
        broadcast,
        seq: 70_000,
        payload: (0..40u8).map(|i| i.wrapping_mul(37)).collect(),
    }
}

/// One check: the fixture's bytes decode to `value`, and `value` encodes to them.
type Check = Box<dyn Fn(&[u8]) -> Result<(), String>>;

fn pinned<T>(value: T) -> (Vec<u8>, Check)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let bytes = postcard::to_stdvec(&value).unwrap();
    let check: Check = Box::new(move |fixture: &[u8]| {
        let decoded: T = postcard::from_bytes(fixture).map_err(|e| format!("decoding: {e}"))?;
        if decoded != value {
            return Err(format!("decodes to {decoded:?}, not {value:?}"));
        }
        let encoded = postcard::to_stdvec(&value).map_err(|e| e.to_string())?;
        if encoded != fixture {
            return Err(format!(
                "today's encoding {} differs from the fixture",
                hex::encode(encoded)
            ));
        }
        Ok(())
    });
    (bytes, check)
}

/// Every pinned value, by name.
fn frames() -> Vec<(&'static str, Vec<u8>, Check)> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, (bytes, check): (Vec<u8>, Check)| {
        v.push((name, bytes, check));
    };
    let start = |algo, op| Start {
        wire_version: WIRE_VERSION,
        session: SESSION,
        algo,
        op,
        participants: vec![1, 2, 4],
        issued_at: 1_700_000_000,
    };
    add(
        "host_start_keygen_dkls23",
        pinned(HostFrame::Start(start(
            Algo::Dkls23,
            Op::Keygen {
                key_id: "k-1".into(),
                threshold: 2,
            },
        ))),
    );
    add(
        "host_start_sign_cggmp21",
        pinned(HostFrame::Start(start(
            Algo::Cggmp21,
            Op::Sign {
                key_id: "k-2".into(),
                generation: 4,
                message: vec![0x42; 32],
                request: Box::new(SignRequest {
                    request_id: "r-1".into(),
                    key_id: "k-2".into(),
                    chain: "evm".into(),
                    network: Some("1".into()),
                    data_type: "HASH".into(),
                    data: format!("\"0x{}\"", "42".repeat(32)),
                    requester: Requester {
                        id: "ak-1".into(),
                        name: "signer".into(),
                        roles: vec!["signer".into()],
                        ip: "127.0.0.1".into(),
                    },
                    wallet: WalletFacts {
                        label: "treasury".into(),
                        tags: vec!["team:ops".into()],
                        groups: vec![],
                    },
                    approvals: vec![ApprovalSignature {
                        approver: "approver-1".into(),
                        signature: vec![7; 64],
                    }],
                    position: 0,
                }),
            },
        ))),
    );
    add(
        "host_start_refresh_frost",
        pinned(HostFrame::Start(start(
            Algo::Frost,
            Op::Refresh {
                key_id: "k-3".into(),
                generation: 2,
            },
        ))),
    );
    add(
        "host_start_repair_dkls23",
        pinned(HostFrame::Start(start(
            Algo::Dkls23,
            Op::Repair(Box::new(RepairOp {
                key_id: "k-4".into(),
                generation: 3,
                public_key: vec![2; 33],
                threshold: 2,
                holders: vec![1, 2, 4],
                target: 4,
                replaces: 3,
            })),
        ))),
    );
    add(
        "host_deliver",
        pinned(HostFrame::Deliver(envelope(Algo::Dkls23, true))),
    );
    add(
        "host_abort",
        pinned(HostFrame::Abort {
            reason: "node 2 failed".into(),
        }),
    );
    add(
        "node_send",
        pinned(NodeFrame::Send(envelope(Algo::Frost, false))),
    );
    add(
        "node_done_key",
        pinned(NodeFrame::Done(Output::Key {
            public_key: vec![2; 33],
            package: [5; 32],
        })),
    );
    add(
        "node_done_signature",
        pinned(NodeFrame::Done(Output::Signature {
            signature: (0..64u8).collect(),
            recovery_id: Some(1),
        })),
    );
    add(
        "node_done_refreshed",
        pinned(NodeFrame::Done(Output::Refreshed {
            public_key: vec![7; 32],
            generation: 5,
            package: [6; 32],
        })),
    );
    for (name, kind, blame) in [
        ("node_failed_request", FailureKind::Request, None),
        ("node_failed_unsupported", FailureKind::Unsupported, None),
        ("node_failed_storage", FailureKind::Storage, None),
        ("node_failed_protocol", FailureKind::Protocol, Some(3)),
        ("node_failed_aborted", FailureKind::Aborted, None),
        ("node_failed_refused", FailureKind::Refused, None),
        ("node_failed_not_held", FailureKind::NotHeld, None),
    ] {
        add(
            name,
            pinned(NodeFrame::Failed(Failure {
                kind,
                message: "a message".into(),
                blame,
            })),
        );
    }
    add("health_request", pinned(HealthRequest {}));
    add(
        "health",
        pinned(Health {
            node_id: 2,
            version: "0.1.0".into(),
            shard_count: 3,
            uptime_secs: 86_400,
            identity: [9; 32],
            keys: vec!["k-1".into(), "k-2".into()],
            bans: vec![Ban {
                key_id: "k-2".into(),
                node: 3,
                since: 1_700_000_000,
            }],
            generations: vec![1, 3],
            staged: vec![Staged {
                key_id: "k-2".into(),
                generation: 4,
                package: [8; 32],
            }],
            events: vec![NodeEvent {
                seq: 7,
                at: 1_700_000_100,
                kind: "BACKUP".into(),
                detail: "{\"custodians\":3}".into(),
            }],
        }),
    );
    add(
        "resolve_request",
        pinned(ResolveRequest {
            key_id: "k-2".into(),
            generation: 4,
            commit: true,
        }),
    );
    for (name, resolution) in [
        ("resolved_committed", Resolution::Committed),
        ("resolved_already_committed", Resolution::AlreadyCommitted),
        ("resolved_dropped", Resolution::Dropped),
        ("resolved_nothing_staged", Resolution::NothingStaged),
    ] {
        add(name, pinned(Resolved { resolution }));
    }
    add(
        "destroy_request",
        pinned(DestroyRequest {
            key_id: "k-1".into(),
        }),
    );
    add("destroyed", pinned(Destroyed { existed: true }));
    // Not postcard, but as pinned: the envelope header every sealed payload is bound to.
    let header = envelope(Algo::Cggmp21, true).header_bytes();
    let expected = header.clone();
    let check: Check = Box::new(move |fixture: &[u8]| {
        (fixture == expected)
            .then_some(())
            .ok_or_else(|| format!("today's header is {}", hex::encode(&expected)))
    });
    add("envelope_header", (header, check));
    v
}

#[test]
fn wire_v3_frames_are_unchanged() {
    assert_eq!(
        WIRE_VERSION, 3,
        "a new wire version gets a new fixture file"
    );
    let frames = frames();
    if std::env::var_os("CUSTOS_WRITE_FIXTURES").is_some() {
        let mut text = format!(
            "# custos-wire version {WIRE_VERSION}: postcard bytes (hex) of one value of each frame and\n\
             # message, and an envelope header. Checked by tests/frames.rs; never edit by hand.\n",
        );
        for (name, bytes, _) in &frames {
            text.push_str(&format!("{name} = \"{}\"\n", hex::encode(bytes)));
        }
        std::fs::write(fixture(WIRE_VERSION), text).unwrap();
    }
    let pinned = read_fixture(WIRE_VERSION);
    let mut failures = Vec::new();
    for (name, _, check) in &frames {
        let Some(hex_bytes) = pinned.get(*name).and_then(|v| v.as_str()) else {
            failures.push(format!("{name}: not in the fixture"));
            continue;
        };
        if let Err(e) = check(&hex::decode(hex_bytes).unwrap()) {
            failures.push(format!("{name}: {e}"));
        }
    }
    for name in pinned.keys() {
        if !frames.iter().any(|(n, _, _)| n == name) {
            failures.push(format!("{name}: in the fixture but no longer checked"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Version 1 frames met by a version 2 side: those whose type did not change still decode
/// to the same value; the others (a `Start` without `issued_at`, an envelope without
/// `part`, health without bans) are refused by the decoder, and a version 1 envelope
/// header is not the one version 2 authenticates, so nothing sealed under it opens.
#[test]
fn wire_v1_frames_still_decode_or_are_refused() {
    let v1 = read_fixture(1);
    let bytes = |name: &str| hex::decode(v1[name].as_str().unwrap()).unwrap();
    let today: std::collections::BTreeMap<&str, Check> =
        frames().into_iter().map(|(n, _, c)| (n, c)).collect();
    for unchanged in [
        "host_abort",
        "node_done_signature",
        "node_failed_request",
        "node_failed_unsupported",
        "node_failed_storage",
        "node_failed_protocol",
        "node_failed_aborted",
        "health_request",
        "destroy_request",
        "destroyed",
    ] {
        today[unchanged](&bytes(unchanged)).unwrap_or_else(|e| panic!("{unchanged}: {e}"));
    }
    for start in [
        "host_start_keygen_dkls23",
        "host_start_sign_cggmp21",
        "host_start_refresh_frost",
    ] {
        // Refused by the decoder, or (bytes that happen to parse) by the node's version
        // check: `wire_version` comes first and still says 1.
        match postcard::from_bytes::<HostFrame>(&bytes(start)) {
            Err(e) => eprintln!("{start}: refused: {e}"),
            Ok(HostFrame::Start(s)) => assert_eq!(s.wire_version, 1, "{start}"),
            Ok(other) => panic!("{start}: {other:?}"),
        }
    }
    assert!(postcard::from_bytes::<HostFrame>(&bytes("host_deliver")).is_err());
    assert!(postcard::from_bytes::<NodeFrame>(&bytes("node_send")).is_err());
    assert!(postcard::from_bytes::<Health>(&bytes("health")).is_err());
    // Keygen and refresh outputs carry the package digest (and the generation) now.
    for done in ["node_done_key", "node_done_refreshed"] {
        assert!(
            postcard::from_bytes::<NodeFrame>(&bytes(done)).is_err(),
            "{done}"
        );
    }
    let mut env = envelope(Algo::Cggmp21, true);
    env.part = 0;
    assert_ne!(bytes("envelope_header"), env.header_bytes());
    assert_eq!(
        v1.len(),
        10 + 2 + 3 + 4,
        "every version 1 frame is looked at above"
    );
}

/// Version 2 frames met by a version 3 side: the frames whose type did not change decode
/// to the same value (a `Start` of version 2 still says so, and a node refuses it); a sign
/// or refresh `Start` without a generation, keygen and refresh outputs without a package
/// digest, and health without generations are refused by the decoder.
#[test]
fn wire_v2_frames_still_decode_or_are_refused() {
    let v2 = read_fixture(2);
    let bytes = |name: &str| hex::decode(v2[name].as_str().unwrap()).unwrap();
    let today: std::collections::BTreeMap<&str, Check> =
        frames().into_iter().map(|(n, _, c)| (n, c)).collect();
    let unchanged = [
        "host_deliver",
        "host_abort",
        "node_send",
        "node_done_signature",
        "node_failed_request",
        "node_failed_unsupported",
        "node_failed_storage",
        "node_failed_protocol",
        "node_failed_aborted",
        "health_request",
        "destroy_request",
        "destroyed",
        "envelope_header",
    ];
    for name in unchanged {
        today[name](&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    match postcard::from_bytes::<HostFrame>(&bytes("host_start_keygen_dkls23")).unwrap() {
        HostFrame::Start(s) => assert_eq!(s.wire_version, 2, "refused by the node's check"),
        other => panic!("{other:?}"),
    }
    for old in ["host_start_sign_cggmp21", "host_start_refresh_frost"] {
        // Refused by the decoder, or (should the bytes happen to parse) by the node's
        // version check: `wire_version` comes first and still says 2.
        match postcard::from_bytes::<HostFrame>(&bytes(old)) {
            Err(_) => {}
            Ok(HostFrame::Start(s)) => assert_eq!(s.wire_version, 2, "{old}"),
            Ok(other) => panic!("{old}: {other:?}"),
        }
    }
    for refused in ["node_done_key", "node_done_refreshed"] {
        assert!(
            postcard::from_bytes::<NodeFrame>(&bytes(refused)).is_err(),
            "{refused}"
        );
    }
    assert!(postcard::from_bytes::<Health>(&bytes("health")).is_err());
    assert_eq!(
        v2.len(),
        unchanged.len() + 1 + 2 + 2 + 1,
        "every version 2 frame is looked at above"
    );
}
