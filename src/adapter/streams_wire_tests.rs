//! The Redis Streams adapter's entries, pub/sub messages and sessions as literal bytes: what
//! `@socket.io/redis-streams-adapter` 0.3.1 wrote to a real Redis (read back with XRANGE and
//! GET), decoded and written again byte for byte, and malformed entries refused by name.

use bytes::Bytes;
use serde_json::json;

use super::cluster_wire::{self, Body, ClusterMessage, ClusterWireError, Opts};
use super::streams_wire::*;
use crate::ns::Room;

fn fields(list: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
    list.iter()
        .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), Bytes::copy_from_slice(v.as_bytes())))
        .collect()
}

fn as_pairs(f: &EntryFields) -> Vec<(Bytes, Bytes)> {
    let mut out = vec![
        (Bytes::from_static(b"uid"), Bytes::from(f.uid.clone())),
        (Bytes::from_static(b"nsp"), Bytes::from(f.nsp.clone())),
        (Bytes::from_static(b"type"), Bytes::from(f.kind.clone())),
    ];
    if let Some(d) = &f.data {
        out.push((Bytes::from_static(b"data"), d.clone()));
    }
    out
}

/// Entries the Node adapter wrote (uid, nsp, type, data), from a live run.
const ENTRIES: &[(&str, &str)] = &[
    (
        "3",
        r#"{"packet":{"type":2,"data":["bcast","a"]},"opts":{"rooms":[],"except":[],"flags":{}}}"#,
    ),
    (
        "3",
        r#"{"packet":{"type":2,"data":["direct",1]},"opts":{"rooms":["yjg0lF-hB14xw17VAAAA"],"except":[],"flags":{}}}"#,
    ),
    (
        "3",
        r#"{"packet":{"type":2,"data":["missedvol","z"]},"opts":{"rooms":[],"except":[],"flags":{"volatile":true}}}"#,
    ),
    (
        "3",
        r#"{"packet":{"type":2,"data":["excluded",1]},"opts":{"rooms":[],"except":["r1"],"flags":{}}}"#,
    ),
    ("4", r#"{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["j1"]}"#),
    ("6", r#"{"opts":{"rooms":["j1"],"except":[],"flags":{}},"close":false}"#),
    // Binary: base64 of MessagePack {packet: {type: 2, data: ["bin", <01 02 03>]}, opts}.
    ("3", "gqZwYWNrZXSCpHR5cGUCpGRhdGGSo2JpbsQDAQIDpG9wdHODpXJvb21zkKZleGNlcHSQpWZsYWdzgA=="),
];

#[test]
fn entries_of_the_node_adapter_decode_and_are_written_again_byte_for_byte() {
    for (kind, data) in ENTRIES {
        let f =
            fields(&[("uid", "0b2ab0fdf890d768"), ("nsp", "/"), ("type", kind), ("data", data)]);
        let m = decode_entry(&f, 100).unwrap_or_else(|e| panic!("{kind} {data}: {e}"));
        assert_eq!(m.uid, "0b2ab0fdf890d768");
        assert_eq!(m.nsp, "/");
        assert!(goes_to_stream(&m), "{data}");
        let again = entry_fields(&m);
        assert_eq!(again.kind, *kind);
        assert_eq!(again.data.as_deref(), Some(data.as_bytes()), "{data}");
    }
}

#[test]
fn a_binary_broadcast_keeps_its_attachment() {
    let (kind, data) = ENTRIES[6];
    let f = fields(&[("uid", "u"), ("nsp", "/"), ("type", kind), ("data", data)]);
    let m = decode_entry(&f, 100).unwrap();
    let Body::Broadcast { event, args, request_id, opts } = &m.body else { panic!("{m:?}") };
    assert_eq!((event.as_str(), request_id), ("bin", &None));
    assert_eq!(args.binary(), &[Bytes::from_static(&[1, 2, 3])]);
    assert_eq!(opts, &Opts::default());
}

#[test]
fn field_order_does_not_matter_and_unknown_fields_are_ignored() {
    let f = fields(&[
        ("data", r#"{"opts":{"rooms":["a"],"except":[],"flags":{}},"rooms":["b"]}"#),
        ("extra", "x"),
        ("type", "5"),
        ("nsp", "/chat"),
        ("uid", "u"),
    ]);
    let m = decode_entry(&f, 100).unwrap();
    assert_eq!(m.nsp, "/chat");
    assert_eq!(
        m.body,
        Body::SocketsLeave {
            opts: Opts { rooms: [Room::from("a")].into_iter().collect(), ..Opts::default() },
            rooms: vec![Room::from("b")],
        }
    );
}

#[test]
fn malformed_entries_are_refused_by_name() {
    let ok = r#"{"packet":{"type":2,"data":["e"]},"opts":{"rooms":[],"except":[],"flags":{}}}"#;
    let cases: &[(&[(&str, &str)], ClusterWireError)] = &[
        (&[("nsp", "/"), ("type", "3"), ("data", ok)], ClusterWireError::Missing("uid")),
        (&[("uid", "u"), ("type", "3"), ("data", ok)], ClusterWireError::Missing("nsp")),
        (&[("uid", "u"), ("nsp", "/"), ("data", ok)], ClusterWireError::Missing("type")),
        (
            &[("uid", "u"), ("nsp", "/"), ("type", "three"), ("data", ok)],
            ClusterWireError::WrongType("type"),
        ),
        (
            &[("uid", "u"), ("nsp", "/"), ("type", "99"), ("data", ok)],
            ClusterWireError::UnknownType(99),
        ),
        (&[("uid", "u"), ("nsp", "/"), ("type", "3")], ClusterWireError::Missing("data")),
        (
            &[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", "!!not base64!!")],
            ClusterWireError::Base64,
        ),
    ];
    for (f, want) in cases {
        assert_eq!(decode_entry(&fields(f), 100).unwrap_err(), *want, "{f:?}");
    }
    // Invalid UTF-8 in a name field; JSON that is cut; MessagePack that is cut.
    let mut f = fields(&[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", ok)]);
    f[0].1 = Bytes::from_static(&[0xff, 0xfe]);
    assert_eq!(decode_entry(&f, 100).unwrap_err(), ClusterWireError::WrongType("uid"));
    for cut in 1..ok.len() {
        let f = fields(&[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", &ok[..cut])]);
        assert!(decode_entry(&f, 100).is_err(), "{}", &ok[..cut]);
    }
    let b64 = ENTRIES[6].1;
    let packed = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    for cut in 1..packed.len() {
        let cut =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &packed[..cut]);
        let f = fields(&[("uid", "u"), ("nsp", "/"), ("type", "3"), ("data", &cut)]);
        assert!(decode_entry(&f, 100).is_err(), "{cut}");
    }
}

#[test]
fn every_type_round_trips_through_its_carrier() {
    let opts = Opts { rooms: [Room::from("r")].into_iter().collect(), ..Opts::default() };
    let bodies = vec![
        Body::Broadcast {
            opts: opts.clone(),
            event: "e".into(),
            args: Default::default(),
            request_id: None,
        },
        Body::Broadcast {
            opts: opts.clone(),
            event: "e".into(),
            args: Default::default(),
            request_id: Some("req".into()),
        },
        Body::SocketsJoin { opts: opts.clone(), rooms: vec![Room::from("x")] },
        Body::DisconnectSockets { opts: opts.clone(), close: true },
        Body::FetchSockets { opts: opts.clone(), request_id: "req".into() },
        Body::BroadcastClientCount { request_id: "req".into(), client_count: 3 },
    ];
    for body in bodies {
        let m = ClusterMessage { uid: "u".into(), nsp: "/".into(), body };
        if goes_to_stream(&m) {
            assert_eq!(decode_entry(&as_pairs(&entry_fields(&m)), 100).unwrap(), m);
        } else {
            let packed = encode_pubsub(&m);
            assert_ne!(packed.first(), Some(&b'{'), "pub/sub is MessagePack");
            assert_eq!(cluster_wire::decode(&packed, 100).unwrap(), m);
        }
    }
}

#[test]
fn a_session_the_node_adapter_stored_reads_and_writes_back_identically() {
    let stored = "hKNzaWS0eWpnMGxGLWhCMTR4dzE3VkFBQUGjcGlktFZEQmwzQVBiaExIeTl0NlNBQUFCpXJvb21zkrR5amcwbEYtaEIxNHh3MTdWQUFBQaJyMaRkYXRhgaNmb2+jYmFy";
    let s = Session::decode(stored.as_bytes(), 100).unwrap();
    assert_eq!(
        s,
        Session {
            sid: "yjg0lF-hB14xw17VAAAA".into(),
            pid: "VDBl3APbhLHy9t6SAAAB".into(),
            rooms: vec!["yjg0lF-hB14xw17VAAAA".into(), "r1".into()],
            data: json!({"foo": "bar"}),
        }
    );
    assert_eq!(s.encode(), stored);
    assert_eq!(session_key("sio:session:", &s.pid), "sio:session:VDBl3APbhLHy9t6SAAAB");
    for bad in ["", "!!", "kQ==" /* [1]: not a map */, "gaNzaWQB" /* {sid: 1} */] {
        assert!(Session::decode(bad.as_bytes(), 100).is_err(), "{bad}");
    }
}
