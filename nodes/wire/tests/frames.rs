//! Style rule 7: the wire format is pinned. `fixtures/frames-v1.toml` holds the postcard
//! bytes of one value of every frame and message of wire version 1 (and the envelope
//! header the nodes authenticate); the test checks that each fixture decodes to that value
//! and that encoding the value today gives the same bytes. A host and nodes of different
//! builds speak the same `WIRE_VERSION`, so these bytes must not change without a new one.
//!
//! A frame added on purpose: add its value below, then write the file again with
//! `CUSTOS_WRITE_FIXTURES=1 .ci/cargo test -p custos-wire --test frames` and check the
//! diff only adds lines.

use custos_wire::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string()),
    )
    .join("tests/fixtures/frames-v1.toml")
}

const SESSION: SessionId = [
    0x5e, 0x55, 0x10, 0x4e, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
];

fn envelope(algo: Algo, broadcast: bool) -> Envelope {
    Envelope {
        session: SESSION,
        algo,
        round: 3,
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
                message: vec![0x42; 32],
            },
        ))),
    );
    add(
        "host_start_refresh_frost",
        pinned(HostFrame::Start(start(
            Algo::Frost,
            Op::Refresh {
                key_id: "k-3".into(),
            },
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
        })),
    );
    for (name, kind, blame) in [
        ("node_failed_request", FailureKind::Request, None),
        ("node_failed_unsupported", FailureKind::Unsupported, None),
        ("node_failed_storage", FailureKind::Storage, None),
        ("node_failed_protocol", FailureKind::Protocol, Some(3)),
        ("node_failed_aborted", FailureKind::Aborted, None),
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
        }),
    );
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
fn wire_v1_frames_are_unchanged() {
    let frames = frames();
    if std::env::var_os("CUSTOS_WRITE_FIXTURES").is_some() {
        let mut text = String::from(
            "# custos-wire version 1: postcard bytes (hex) of one value of each frame and\n\
             # message, and an envelope header. Checked by tests/frames.rs; never edit by hand.\n",
        );
        for (name, bytes, _) in &frames {
            text.push_str(&format!("{name} = \"{}\"\n", hex::encode(bytes)));
        }
        std::fs::write(fixture(), text).unwrap();
    }
    let text = std::fs::read_to_string(fixture()).unwrap();
    let pinned: toml::Table = text.parse().unwrap();
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
