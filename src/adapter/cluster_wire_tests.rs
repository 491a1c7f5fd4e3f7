//! The cluster messages as literal wire bytes: JSON and MessagePack (the bytes notepack.io
//! writes) of every type in both directions, hostile and malformed input, every prefix and
//! byte flip of each, and the channel rules of the sharded adapter.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use smallvec::SmallVec;

use super::cluster_wire::*;
use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;
use crate::proto::json::{JsonError, Verbatim};
use crate::proto::msgpack::{self, MsgpackError};

fn rooms(list: &[&str]) -> SmallVec<[Room; 2]> {
    list.iter().map(|r| Room::from(*r)).collect()
}

fn room_vec(list: &[&str]) -> Vec<Room> {
    list.iter().map(|r| Room::from(*r)).collect()
}

fn opts(r: &[&str], except: &[&str], flags: Flags) -> Opts {
    Opts { rooms: rooms(r), except: rooms(except), flags }
}

fn msg(uid: &str, nsp: &str, body: Body) -> ClusterMessage {
    ClusterMessage { uid: uid.into(), nsp: nsp.into(), body }
}

fn bin(b: &'static [u8]) -> Bytes {
    Bytes::from_static(b)
}

fn dec(b: &[u8]) -> Result<ClusterMessage, ClusterWireError> {
    decode(&Bytes::copy_from_slice(b), 100)
}

/// The MessagePack the sharded adapter would write for `m`, whatever its binary.
fn as_msgpack(m: &ClusterMessage) -> Vec<u8> {
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, &tree(m), m.body.binary());
    out.to_vec()
}

/// The JSON messages of every type, as `JSON.stringify` writes them in the adapter.
fn json_cases() -> Vec<(&'static str, ClusterMessage)> {
    let none = Flags::default;
    vec![
        (r#"{"type":1,"uid":"u1","nsp":"/"}"#, msg("u1", "/", Body::InitialHeartbeat)),
        (r#"{"type":2,"uid":"u1","nsp":"/"}"#, msg("u1", "/", Body::Heartbeat)),
        (
            r#"{"type":3,"data":{"packet":{"type":2,"data":["ev",1,"a"]},"opts":{"rooms":["r"],"except":["x"],"flags":{"volatile":true,"compress":false}}},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::Broadcast {
                    opts: opts(
                        &["r"],
                        &["x"],
                        Flags { volatile: true, compress: Some(false), ..none() },
                    ),
                    event: "ev".into(),
                    args: Args::new().arg(1).arg("a"),
                    request_id: None,
                },
            ),
        ),
        (
            r#"{"type":3,"data":{"packet":{"type":2,"data":["ack-me"]},"requestId":"q1","opts":{"rooms":[],"except":[],"flags":{"timeout":5000}}},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::Broadcast {
                    opts: opts(&[], &[], Flags { timeout: Some(5000), ..none() }),
                    event: "ack-me".into(),
                    args: Args::new(),
                    request_id: Some("q1".into()),
                },
            ),
        ),
        (
            r#"{"type":4,"data":{"opts":{"rooms":["r"],"except":[],"flags":{}},"rooms":["a","b"]},"uid":"u1","nsp":"/chat"}"#,
            msg(
                "u1",
                "/chat",
                Body::SocketsJoin { opts: opts(&["r"], &[], none()), rooms: room_vec(&["a", "b"]) },
            ),
        ),
        (
            r#"{"type":5,"data":{"opts":{"rooms":[],"except":["r"],"flags":{}},"rooms":["a"]},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::SocketsLeave { opts: opts(&[], &["r"], none()), rooms: room_vec(&["a"]) },
            ),
        ),
        (
            r#"{"type":6,"data":{"opts":{"rooms":["r"],"except":[],"flags":{}},"close":true},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::DisconnectSockets { opts: opts(&["r"], &[], none()), close: true },
            ),
        ),
        (
            r#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{"timeout":100}},"requestId":"q2"},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::FetchSockets {
                    opts: opts(&[], &[], Flags { timeout: Some(100), ..none() }),
                    request_id: "q2".into(),
                },
            ),
        ),
        (
            r#"{"type":8,"data":{"requestId":"q2","sockets":[{"id":"s1","handshake":{"time":"t","auth":{}},"rooms":["s1","r"],"data":{"n":1}},{"id":"s2","handshake":{},"rooms":["s2"]}]},"uid":"u2","nsp":"/"}"#,
            msg(
                "u2",
                "/",
                Body::FetchSocketsResponse {
                    request_id: "q2".into(),
                    sockets: vec![
                        SocketInfo {
                            id: "s1".into(),
                            handshake: json!({"time": "t", "auth": {}}),
                            rooms: room_vec(&["s1", "r"]),
                            data: Some(json!({"n": 1})),
                        },
                        // `data: undefined`, dropped by JSON
                        SocketInfo {
                            id: "s2".into(),
                            handshake: json!({}),
                            rooms: room_vec(&["s2"]),
                            data: None,
                        },
                    ],
                    binary: vec![],
                },
            ),
        ),
        (
            r#"{"type":9,"data":{"packet":["sse",1]},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::ServerSideEmit {
                    event: "sse".into(),
                    args: Args::new().arg(1),
                    request_id: None,
                },
            ),
        ),
        (
            r#"{"type":9,"data":{"requestId":"q3","packet":["sse"]},"uid":"u1","nsp":"/"}"#,
            msg(
                "u1",
                "/",
                Body::ServerSideEmit {
                    event: "sse".into(),
                    args: Args::new(),
                    request_id: Some("q3".into()),
                },
            ),
        ),
        (
            r#"{"type":10,"data":{"requestId":"q3","packet":"pong"},"uid":"u2","nsp":"/"}"#,
            msg(
                "u2",
                "/",
                Body::ServerSideEmitResponse {
                    request_id: "q3".into(),
                    reply: Args::new().arg("pong"),
                },
            ),
        ),
        // a handler that acked with nothing: `packet: undefined`
        (
            r#"{"type":10,"data":{"requestId":"q3"},"uid":"u2","nsp":"/"}"#,
            msg(
                "u2",
                "/",
                Body::ServerSideEmitResponse { request_id: "q3".into(), reply: Args::new() },
            ),
        ),
        (
            r#"{"type":11,"data":{"requestId":"q4","clientCount":3},"uid":"u2","nsp":"/"}"#,
            msg("u2", "/", Body::BroadcastClientCount { request_id: "q4".into(), client_count: 3 }),
        ),
        (
            r#"{"type":12,"data":{"requestId":"q4","packet":{"ok":true}},"uid":"u2","nsp":"/"}"#,
            msg(
                "u2",
                "/",
                Body::BroadcastAck {
                    request_id: "q4".into(),
                    reply: Args::new().arg(json!({"ok": true})),
                },
            ),
        ),
        (
            r#"{"type":12,"data":{"requestId":"q4","packet":null},"uid":"u2","nsp":"/"}"#,
            msg(
                "u2",
                "/",
                Body::BroadcastAck { request_id: "q4".into(), reply: Args::new().arg(Value::Null) },
            ),
        ),
        (r#"{"type":13,"uid":"u1","nsp":"/"}"#, msg("u1", "/", Body::AdapterClose)),
    ]
}

/// The same kinds of message as notepack.io encodes them (`notepack.encode(message)`).
fn msgpack_cases() -> Vec<(&'static [u8], ClusterMessage)> {
    let none = Flags::default;
    vec![
        (b"\x83\xa4type\x01\xa3uid\xa2u1\xa3nsp\xa1/", msg("u1", "/", Body::InitialHeartbeat)),
        (b"\x83\xa4type\x02\xa3uid\xa2u1\xa3nsp\xa1/", msg("u1", "/", Body::Heartbeat)),
        (
            b"\x84\xa4type\x03\xa4data\x82\xa6packet\x82\xa4type\x02\xa4data\x93\xa2ev\x01\xa1a\
              \xa4opts\x83\xa5rooms\x91\xa1r\xa6except\x91\xa1x\xa5flags\x82\xa8volatile\xc3\
              \xa8compress\xc2\xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::Broadcast {
                    opts: opts(
                        &["r"],
                        &["x"],
                        Flags { volatile: true, compress: Some(false), ..none() },
                    ),
                    event: "ev".into(),
                    args: Args::new().arg(1).arg("a"),
                    request_id: None,
                },
            ),
        ),
        (
            b"\x84\xa4type\x03\xa4data\x83\xa6packet\x82\xa4type\x02\xa4data\x92\xa2ev\xc4\x02\x01\x02\
              \xa9requestId\xa2q1\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x81\xa7timeout\
              \xcd\x13\x88\xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::Broadcast {
                    opts: opts(&[], &[], Flags { timeout: Some(5000), ..none() }),
                    event: "ev".into(),
                    args: Args::new().binary_arg(bin(b"\x01\x02")),
                    request_id: Some("q1".into()),
                },
            ),
        ),
        (
            b"\x84\xa4type\x04\xa4data\x82\xa4opts\x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80\
              \xa5rooms\x92\xa1a\xa1b\xa3uid\xa2u1\xa3nsp\xa5/chat",
            msg(
                "u1",
                "/chat",
                Body::SocketsJoin { opts: opts(&["r"], &[], none()), rooms: room_vec(&["a", "b"]) },
            ),
        ),
        (
            b"\x84\xa4type\x05\xa4data\x82\xa4opts\x83\xa5rooms\x90\xa6except\x91\xa1r\xa5flags\x80\
              \xa5rooms\x91\xa1a\xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::SocketsLeave { opts: opts(&[], &["r"], none()), rooms: room_vec(&["a"]) },
            ),
        ),
        (
            b"\x84\xa4type\x06\xa4data\x82\xa4opts\x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80\
              \xa5close\xc3\xa3uid\xa2u1\xa3nsp\xa1/",
            msg("u1", "/", Body::DisconnectSockets { opts: opts(&["r"], &[], none()), close: true }),
        ),
        (
            b"\x84\xa4type\x07\xa4data\x82\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x81\
              \xa7timeoutd\xa9requestId\xa2q2\xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::FetchSockets {
                    opts: opts(&[], &[], Flags { timeout: Some(100), ..none() }),
                    request_id: "q2".into(),
                },
            ),
        ),
        (
            b"\x84\xa4type\x08\xa4data\x82\xa9requestId\xa2q2\xa7sockets\x91\x84\xa2id\xa2s1\
              \xa9handshake\x80\xa5rooms\x91\xa2s1\xa4data\x81\xa1a\xc4\x01\xff\xa3uid\xa2u2\xa3nsp\xa1/",
            msg(
                "u2",
                "/",
                Body::FetchSocketsResponse {
                    request_id: "q2".into(),
                    sockets: vec![SocketInfo {
                        id: "s1".into(),
                        handshake: json!({}),
                        rooms: room_vec(&["s1"]),
                        data: Some(json!({"a": {"_placeholder": true, "num": 0}})),
                    }],
                    binary: vec![bin(b"\xff")],
                },
            ),
        ),
        (
            b"\x84\xa4type\x09\xa4data\x81\xa6packet\x92\xa3sse\x01\xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::ServerSideEmit {
                    event: "sse".into(),
                    args: Args::new().arg(1),
                    request_id: None,
                },
            ),
        ),
        (
            b"\x84\xa4type\x09\xa4data\x82\xa9requestId\xa2q3\xa6packet\x92\xa3sse\xc4\x01\x09\
              \xa3uid\xa2u1\xa3nsp\xa1/",
            msg(
                "u1",
                "/",
                Body::ServerSideEmit {
                    event: "sse".into(),
                    args: Args::new().binary_arg(bin(b"\x09")),
                    request_id: Some("q3".into()),
                },
            ),
        ),
        (
            b"\x84\xa4type\x0a\xa4data\x82\xa9requestId\xa2q3\xa6packet\xc4\x01\x07\xa3uid\xa2u2\xa3nsp\xa1/",
            msg(
                "u2",
                "/",
                Body::ServerSideEmitResponse {
                    request_id: "q3".into(),
                    reply: Args::new().binary_arg(bin(b"\x07")),
                },
            ),
        ),
        (
            b"\x84\xa4type\x0b\xa4data\x82\xa9requestId\xa2q4\xabclientCount\x03\xa3uid\xa2u2\xa3nsp\xa1/",
            msg("u2", "/", Body::BroadcastClientCount { request_id: "q4".into(), client_count: 3 }),
        ),
        (
            b"\x84\xa4type\x0c\xa4data\x82\xa9requestId\xa2q4\xa6packet\x92\xc4\x01\x01\xc4\x01\x02\
              \xa3uid\xa2u2\xa3nsp\xa1/",
            msg(
                "u2",
                "/",
                Body::BroadcastAck {
                    request_id: "q4".into(),
                    reply: Args::from_parts(
                        vec![json!([
                            {"_placeholder": true, "num": 0},
                            {"_placeholder": true, "num": 1}
                        ])],
                        vec![bin(b"\x01"), bin(b"\x02")],
                        Verbatim::default(),
                    ),
                },
            ),
        ),
        (b"\x83\xa4type\x0d\xa3uid\xa2u1\xa3nsp\xa1/", msg("u1", "/", Body::AdapterClose)),
    ]
}

#[test]
fn every_type_in_json_both_ways() {
    let cases = json_cases();
    let mut kinds: Vec<u8> = cases.iter().map(|(_, m)| m.kind().code()).collect();
    kinds.dedup();
    assert_eq!(kinds, (1..=13).collect::<Vec<u8>>(), "every type, in order");
    for (wire, m) in &cases {
        assert_eq!(dec(wire.as_bytes()).as_ref(), Ok(m), "decoding {wire}");
        assert_eq!(&encode(m)[..], wire.as_bytes(), "encoding {m:?}");
    }
}

#[test]
fn every_type_in_msgpack_both_ways() {
    let cases = msgpack_cases();
    let mut kinds: Vec<u8> = cases.iter().map(|(_, m)| m.kind().code()).collect();
    kinds.dedup();
    assert_eq!(kinds, (1..=13).collect::<Vec<u8>>(), "every type, in order");
    for (wire, m) in &cases {
        assert_eq!(dec(wire).as_ref(), Ok(m), "decoding {:?}", Bytes::copy_from_slice(wire));
        // The adapter's MessagePack layout, byte for byte.
        assert_eq!(as_msgpack(m), wire.to_vec(), "layout of {m:?}");
        let ours = encode(m);
        if m.kind().may_contain_binary() && !m.body.binary().is_empty() {
            assert_eq!(&ours[..], &wire[..], "binary goes as MessagePack: {m:?}");
        } else {
            // Without binary the adapter sends JSON, whatever the type.
            assert_eq!(ours.first(), Some(&b'{'), "{m:?}");
            assert_eq!(dec(&ours).as_ref(), Ok(m));
        }
    }
}

#[test]
fn binary_outside_the_payload_is_not_carried_and_placeholders_are_renumbered() {
    // BROADCAST whose flags hold an unknown `x: <bin aa>` (dropped) before the argument
    // `<bin bb>`: the argument keeps its bytes as attachment 0.
    let wire = b"\x84\xa4type\x03\xa4data\x82\xa4opts\x83\xa5rooms\x90\xa6except\x90\xa5flags\x81\
                 \xa1x\xc4\x01\xaa\xa6packet\x82\xa4type\x02\xa4data\x93\xa2ev\xc4\x01\xbb\
                 \x81\xa1k\xc4\x01\xbb\xa3uid\xa2u1\xa3nsp\xa1/";
    let m = dec(wire).unwrap();
    let Body::Broadcast { args, .. } = &m.body else { panic!("{m:?}") };
    assert_eq!(
        args.values(),
        &[json!({"_placeholder": true, "num": 0}), json!({"k": {"_placeholder": true, "num": 1}})]
    );
    assert_eq!(args.binary(), &[bin(b"\xbb"), bin(b"\xbb")]);
    // and what we send again is only what the arguments hold
    assert_eq!(dec(&encode(&m)).unwrap(), m);
    // a placeholder-looking map naming no attachment is left as it is
    let wire =
        br#"{"type":9,"data":{"packet":["e",{"_placeholder":true,"num":7}]},"uid":"u","nsp":"/"}"#;
    let m = dec(wire).unwrap();
    let Body::ServerSideEmit { args, .. } = &m.body else { panic!("{m:?}") };
    assert_eq!(args.values(), &[json!({"_placeholder": true, "num": 7})]);
    assert!(args.binary().is_empty());
    assert_eq!(&encode(&m)[..], &wire[..]);
}

#[test]
fn numbers_as_javascript_reads_them() {
    let m = dec(br#"{"type":11.0,"data":{"requestId":"q","clientCount":1e2},"uid":"u","nsp":"/"}"#)
        .unwrap();
    assert_eq!(m.body, Body::BroadcastClientCount { request_id: "q".into(), client_count: 100 });
    // room names and event names that are numbers are named as JavaScript prints them
    let m = dec(br#"{"type":3,"data":{"packet":{"type":2,"data":[7,0.5]},"opts":{"rooms":[1,2.5,1e21],"except":null,"flags":{"timeout":1.9}}},"uid":"u","nsp":"/"}"#)
        .unwrap();
    let Body::Broadcast { opts, event, args, .. } = &m.body else { panic!("{m:?}") };
    assert_eq!(opts.rooms, rooms(&["1", "2.5", "1e+21"]));
    assert!(opts.except.is_empty());
    assert_eq!(opts.flags.timeout, Some(1));
    assert_eq!((event.as_str(), args.values()), ("7", &[json!(0.5)][..]));
    // negative and absurd timeouts are bounded, Infinity (null in JSON) is none
    let timeout = |t: &str| {
        let text = format!(
            r#"{{"type":7,"data":{{"opts":{{"rooms":[],"except":[],"flags":{{"timeout":{t}}}}},"requestId":"q"}},"uid":"u","nsp":"/"}}"#
        );
        match dec(text.as_bytes()).map(|m| m.body) {
            Ok(Body::FetchSockets { opts, .. }) => Ok(opts.flags.timeout),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        }
    };
    assert_eq!(timeout("-5"), Ok(Some(0)));
    assert_eq!(timeout("1e300"), Ok(Some(u64::MAX)));
    assert_eq!(timeout("null"), Ok(None));
    assert_eq!(timeout(r#""5""#), Err(ClusterWireError::WrongType("data.opts.flags.timeout")));
    // encode writes numbers as JavaScript does
    let m = msg(
        "u",
        "/",
        Body::ServerSideEmit {
            event: "e".into(),
            args: Args::new().arg(1e21).arg(1.5e-7).arg(100.0).arg(-0.0),
            request_id: None,
        },
    );
    assert_eq!(
        &encode(&m)[..],
        br#"{"type":9,"data":{"packet":["e",1e+21,1.5e-7,100,0]},"uid":"u","nsp":"/"}"#
    );
}

#[test]
fn strings_as_javascript_writes_them() {
    // escapes, non-ASCII, and an argument a client sent with a lone surrogate, relayed as
    // the client wrote it
    let args = Args::from_parts(
        vec![json!("\u{fffd}"), json!("é\"\n")],
        vec![],
        Verbatim::entry(0, r#""\ud83d""#.into()),
    );
    let m = msg(
        "u\"",
        "/é",
        Body::Broadcast {
            opts: opts(&["r\\"], &[], Flags::default()),
            event: "😀".into(),
            args,
            request_id: None,
        },
    );
    let wire = encode(&m);
    assert_eq!(
        std::str::from_utf8(&wire).unwrap(),
        r#"{"type":3,"data":{"packet":{"type":2,"data":["😀","\ud83d","é\"\n"]},"opts":{"rooms":["r\\"],"except":[],"flags":{}}},"uid":"u\"","nsp":"/é"}"#
    );
    // read back, the lone surrogate is U+FFFD (a Rust string cannot hold it)
    let back = dec(&wire).unwrap();
    let Body::Broadcast { args, .. } = &back.body else { panic!("{back:?}") };
    assert_eq!(args.values(), &[json!("\u{fffd}"), json!("é\"\n")]);
    // invalid UTF-8 in JSON text reads as U+FFFD, as Buffer.toString reads it
    let m = dec(b"{\"type\":1,\"uid\":\"a\xffb\",\"nsp\":\"/\"}").unwrap();
    assert_eq!(m.uid, "a\u{fffd}b");
}

#[test]
fn flags_round_trip_and_unknown_ones_are_dropped() {
    let all = Flags {
        volatile: true,
        compress: Some(true),
        local: true,
        timeout: Some(250),
        expect_single_response: true,
    };
    let m = msg(
        "u",
        "/",
        Body::Broadcast {
            opts: opts(&["a"], &["b", "c"], all.clone()),
            event: "e".into(),
            args: Args::new(),
            request_id: Some("r".into()),
        },
    );
    assert_eq!(
        &encode(&m)[..],
        br#"{"type":3,"data":{"packet":{"type":2,"data":["e"]},"requestId":"r","opts":{"rooms":["a"],"except":["b","c"],"flags":{"expectSingleResponse":true,"volatile":true,"compress":true,"local":true,"timeout":250}}},"uid":"u","nsp":"/"}"#
    );
    assert_eq!(dec(&encode(&m)).unwrap(), m);
    let m = dec(br#"{"type":6,"data":{"opts":{"rooms":[],"except":[],"flags":{"broadcast":true,"volatile":false}},"close":false},"uid":"u","nsp":"/"}"#).unwrap();
    assert_eq!(
        m.body,
        Body::DisconnectSockets { opts: opts(&[], &[], Flags::default()), close: false }
    );
    // absent flags are none
    let m = dec(
        br#"{"type":4,"data":{"opts":{"rooms":["r"],"except":[]},"rooms":[]},"uid":"u","nsp":"/"}"#,
    )
    .unwrap();
    assert_eq!(
        m.body,
        Body::SocketsJoin { opts: opts(&["r"], &[], Flags::default()), rooms: vec![] }
    );
}

#[test]
fn selection_converts_both_ways() {
    let sel = Selection { rooms: rooms(&["a", "b"]), except: rooms(&["c"]) };
    let o = Opts::from(sel.clone());
    assert_eq!(o, opts(&["a", "b"], &["c"], Flags::default()));
    assert_eq!(Selection::from(&o), sel);
}

#[test]
fn bad_input_is_a_named_error() {
    use ClusterWireError as E;
    let cases: &[(&[u8], ClusterWireError)] = &[
        (b"", E::Msgpack(MsgpackError::Truncated)),
        (b"{", E::Json(JsonError::Syntax)),
        (b"{}x", E::Json(JsonError::Trailing)),
        (br#"{"type":1,"uid":"u","nsp":"/"} {}"#, E::Json(JsonError::Trailing)),
        // leading whitespace is not JSON to the adapter (the first byte decides)
        (br#" {"type":1,"uid":"u","nsp":"/"}"#, E::Msgpack(MsgpackError::Trailing)),
        (b"\x83\xa4type\x01\xa3uid\xa2u1\xa3nsp\xa1/\x00", E::Msgpack(MsgpackError::Trailing)),
        (b"\xc1", E::Msgpack(MsgpackError::Unsupported(0xc1))),
        (b"[1]", E::Msgpack(MsgpackError::Trailing)),
        (b"\x91\x01", E::NotAnObject),
        (b"\xa1x", E::NotAnObject),
        (br#"{}"#, E::Missing("type")),
        (br#"{"type":"3","uid":"u","nsp":"/"}"#, E::WrongType("type")),
        (br#"{"type":0,"uid":"u","nsp":"/"}"#, E::UnknownType(0)),
        (br#"{"type":14,"uid":"u","nsp":"/"}"#, E::UnknownType(14)),
        (br#"{"type":-1,"uid":"u","nsp":"/"}"#, E::OutOfRange("type")),
        (br#"{"type":3.5,"uid":"u","nsp":"/"}"#, E::OutOfRange("type")),
        (br#"{"type":1e300,"uid":"u","nsp":"/"}"#, E::OutOfRange("type")),
        (br#"{"type":1,"nsp":"/"}"#, E::Missing("uid")),
        (br#"{"type":1,"uid":1,"nsp":"/"}"#, E::WrongType("uid")),
        (br#"{"type":1,"uid":"u"}"#, E::Missing("nsp")),
        (br#"{"type":1,"uid":"u","nsp":null}"#, E::WrongType("nsp")),
        (br#"{"type":3,"uid":"u","nsp":"/"}"#, E::Missing("data")),
        (br#"{"type":3,"data":[],"uid":"u","nsp":"/"}"#, E::WrongType("data")),
        (br#"{"type":3,"data":{},"uid":"u","nsp":"/"}"#, E::Missing("data.opts")),
        (br#"{"type":3,"data":{"opts":1},"uid":"u","nsp":"/"}"#, E::WrongType("data.opts")),
        (
            br#"{"type":3,"data":{"opts":{"rooms":"r"}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.opts.rooms"),
        ),
        (
            br#"{"type":3,"data":{"opts":{"rooms":[true]}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.opts.rooms"),
        ),
        (
            br#"{"type":3,"data":{"opts":{"except":[{}]}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.opts.except"),
        ),
        (
            br#"{"type":3,"data":{"opts":{"flags":[]}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.opts.flags"),
        ),
        (
            br#"{"type":3,"data":{"opts":{"flags":{"volatile":1}}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.opts.flags.volatile"),
        ),
        (br#"{"type":3,"data":{"opts":{}},"uid":"u","nsp":"/"}"#, E::Missing("data.packet")),
        (
            br#"{"type":3,"data":{"opts":{},"packet":[]},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.packet"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"data":["e"]}},"uid":"u","nsp":"/"}"#,
            E::Missing("data.packet.type"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"type":1,"data":["e"]}},"uid":"u","nsp":"/"}"#,
            E::NotAnEvent(1),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"type":2}},"uid":"u","nsp":"/"}"#,
            E::Missing("data.packet.data"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"type":2,"data":{}}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.packet.data"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"type":2,"data":[]}},"uid":"u","nsp":"/"}"#,
            E::NoEvent("data.packet.data"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"packet":{"type":2,"data":[null]}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.packet.data"),
        ),
        (
            br#"{"type":3,"data":{"opts":{},"requestId":5,"packet":{"type":2,"data":["e"]}},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.requestId"),
        ),
        (br#"{"type":4,"data":{"opts":{}},"uid":"u","nsp":"/"}"#, E::Missing("data.rooms")),
        (
            br#"{"type":5,"data":{"opts":{},"rooms":[[]]},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.rooms"),
        ),
        (br#"{"type":6,"data":{"opts":{}},"uid":"u","nsp":"/"}"#, E::Missing("data.close")),
        (
            br#"{"type":6,"data":{"opts":{},"close":0},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.close"),
        ),
        (br#"{"type":7,"data":{"opts":{}},"uid":"u","nsp":"/"}"#, E::Missing("data.requestId")),
        (br#"{"type":8,"data":{"requestId":"q"},"uid":"u","nsp":"/"}"#, E::Missing("data.sockets")),
        (
            br#"{"type":8,"data":{"requestId":"q","sockets":[1]},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.sockets[]"),
        ),
        (
            br#"{"type":8,"data":{"requestId":"q","sockets":[{"id":"s","rooms":[]}]},"uid":"u","nsp":"/"}"#,
            E::Missing("data.sockets[].handshake"),
        ),
        (
            br#"{"type":8,"data":{"requestId":"q","sockets":[{"id":"s","handshake":{}}]},"uid":"u","nsp":"/"}"#,
            E::Missing("data.sockets[].rooms"),
        ),
        (
            br#"{"type":8,"data":{"requestId":"q","sockets":[{"handshake":{},"rooms":[]}]},"uid":"u","nsp":"/"}"#,
            E::Missing("data.sockets[].id"),
        ),
        (br#"{"type":9,"data":{},"uid":"u","nsp":"/"}"#, E::Missing("data.packet")),
        (br#"{"type":9,"data":{"packet":"e"},"uid":"u","nsp":"/"}"#, E::WrongType("data.packet")),
        (br#"{"type":10,"data":{"packet":1},"uid":"u","nsp":"/"}"#, E::Missing("data.requestId")),
        (
            br#"{"type":11,"data":{"requestId":"q"},"uid":"u","nsp":"/"}"#,
            E::Missing("data.clientCount"),
        ),
        (
            br#"{"type":11,"data":{"requestId":"q","clientCount":-1},"uid":"u","nsp":"/"}"#,
            E::OutOfRange("data.clientCount"),
        ),
        (
            br#"{"type":11,"data":{"requestId":"q","clientCount":1.5},"uid":"u","nsp":"/"}"#,
            E::OutOfRange("data.clientCount"),
        ),
        (
            br#"{"type":11,"data":{"requestId":"q","clientCount":"1"},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.clientCount"),
        ),
        (
            br#"{"type":12,"data":{"requestId":null},"uid":"u","nsp":"/"}"#,
            E::WrongType("data.requestId"),
        ),
        // a map key that is not a string, a bin where the uid goes
        (b"\x81\x01\x02", E::Msgpack(MsgpackError::Invalid)),
        (b"\x83\xa4type\x01\xa3uid\xc4\x01u\xa3nsp\xa1/", E::WrongType("uid")),
        // absurd lengths announce more than the message holds
        (b"\xdf\xff\xff\xff\xff\xa4type\x01", E::Msgpack(MsgpackError::Truncated)),
        (b"\x81\xa4type\xdb\xff\xff\xff\xff", E::Msgpack(MsgpackError::Truncated)),
    ];
    for (wire, want) in cases {
        assert_eq!(dec(wire).as_ref(), Err(want), "{:?}", Bytes::copy_from_slice(wire));
    }
    // heartbeats and ADAPTER_CLOSE carry no data; one present is not read
    let m = dec(br#"{"type":2,"data":[1],"uid":"u","nsp":"/"}"#).unwrap();
    assert_eq!(m.body, Body::Heartbeat);
}

#[test]
fn nesting_is_bounded_without_recursion() {
    // a broadcast's arguments are 4 levels down: a scalar fits in 4, an array argument needs 5
    let wire =
        br#"{"type":3,"data":{"packet":{"type":2,"data":["e",1]},"opts":{}},"uid":"u","nsp":"/"}"#;
    assert!(decode(&Bytes::from_static(wire), 3).is_err());
    assert!(decode(&Bytes::from_static(wire), 4).is_ok());
    let wire = br#"{"type":3,"data":{"packet":{"type":2,"data":["e",[1]]},"opts":{}},"uid":"u","nsp":"/"}"#;
    assert_eq!(
        decode(&Bytes::from_static(wire), 4),
        Err(ClusterWireError::Json(JsonError::TooDeep { limit: 4 }))
    );
    assert!(decode(&Bytes::from_static(wire), 5).is_ok());
    // 100,000 levels in either encoding: a named error, no stack overflow
    let mut deep = br#"{"type":9,"data":{"packet":["e","#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    assert_eq!(dec(&deep), Err(ClusterWireError::Json(JsonError::TooDeep { limit: 100 })));
    let mut deep = b"\x84\xa4type\x09\xa4data\x81\xa6packet\x92\xa1e".to_vec();
    deep.extend(std::iter::repeat_n(0x91u8, 100_000));
    assert_eq!(dec(&deep), Err(ClusterWireError::Msgpack(MsgpackError::TooDeep { limit: 100 })));
    // deep but allowed binary placeholders are renumbered without recursion either
    let depth = 5_000;
    let mut deep = b"\x84\xa4type\x09\xa4data\x81\xa6packet\x92\xa1e".to_vec();
    deep.extend(std::iter::repeat_n(0x91u8, depth));
    deep.extend_from_slice(b"\xc4\x01\x01\xa3uid\xa1u\xa3nsp\xa1/");
    let m = decode(&Bytes::from(deep), depth + 10).unwrap();
    assert_eq!(m.body.binary(), &[bin(b"\x01")]);
}

/// Every wire literal above.
fn all_literals() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = json_cases().iter().map(|(w, _)| w.as_bytes().to_vec()).collect();
    all.extend(msgpack_cases().iter().map(|(w, _)| w.to_vec()));
    all
}

#[test]
fn every_prefix_and_every_trailing_byte_is_an_error() {
    for wire in all_literals() {
        assert!(dec(&wire).is_ok());
        for i in 0..wire.len() {
            assert!(dec(&wire[..i]).is_err(), "prefix {i} of {:?}", Bytes::from(wire.clone()));
        }
        for extra in [0x00u8, b' ', b'}', 0xc0] {
            let mut longer = wire.clone();
            longer.push(extra);
            // JSON allows trailing whitespace; nothing else is allowed after the value
            if !(wire[0] == b'{' && extra == b' ') {
                assert!(dec(&longer).is_err(), "{:?}", Bytes::from(longer));
            }
        }
    }
}

#[test]
fn byte_flips_never_panic_and_what_decodes_encodes_again() {
    for wire in all_literals() {
        for i in 0..wire.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = wire.clone();
                bad[i] ^= flip;
                if let Ok(m) = dec(&bad) {
                    // whatever decodes survives our encoding
                    assert_eq!(dec(&encode(&m)).as_ref(), Ok(&m), "{:?}", Bytes::from(bad));
                }
            }
        }
    }
}

#[test]
fn channels_of_the_sharded_adapter() {
    assert_eq!(channel("socket.io", "/"), "socket.io#/#");
    assert_eq!(response_channel("socket.io", "/chat", "abc123"), "socket.io#/chat#abc123#");
    assert_eq!(room_channel("p", "/", "room 1"), "p#/#room 1#");
    let b = |r: &[&str], request_id: Option<&str>| {
        msg(
            "u",
            "/n",
            Body::Broadcast {
                opts: opts(r, &[], Flags::default()),
                event: "e".into(),
                args: Args::new(),
                request_id: request_id.map(Into::into),
            },
        )
    };
    let sid = "ABCDEFGHIJKLMNOPQRST";
    use SubscriptionMode::*;
    let table: &[(ClusterMessage, SubscriptionMode, &str)] = &[
        (b(&["r"], None), Dynamic, "p#/n#r#"),
        (b(&["r"], None), DynamicPrivate, "p#/n#r#"),
        (b(&["r"], None), Static, "p#/n#"),
        // a room that looks like a socket id: its own channel only in dynamic-private
        (b(&[sid], None), Dynamic, "p#/n#"),
        (b(&[sid], None), DynamicPrivate, "p#/n#ABCDEFGHIJKLMNOPQRST#"),
        // awaiting acks: every server, so the namespace channel
        (b(&["r"], Some("q")), Dynamic, "p#/n#"),
        (b(&["r"], Some("q")), DynamicPrivate, "p#/n#"),
        // no room, or several
        (b(&[], None), DynamicPrivate, "p#/n#"),
        (b(&["r", "s"], None), DynamicPrivate, "p#/n#"),
        // other types never use a room channel
        (
            msg(
                "u",
                "/n",
                Body::SocketsJoin { opts: opts(&["r"], &[], Flags::default()), rooms: vec![] },
            ),
            DynamicPrivate,
            "p#/n#",
        ),
    ];
    for (m, mode, want) in table {
        assert_eq!(publish_channel("p", m, *mode), *want, "{mode:?} {m:?}");
        assert_eq!(dynamic_room(m, *mode).is_some(), want.matches('#').count() == 3);
    }
    // JavaScript lengths: UTF-16 code units
    assert!(looks_like_socket_id(sid));
    assert!(!looks_like_socket_id(&sid[1..]));
    assert!(!looks_like_socket_id(&format!("{sid}x")));
    assert!(looks_like_socket_id(&"é".repeat(20)), "20 units, 40 bytes");
    assert!(looks_like_socket_id(&"😀".repeat(10)), "10 pairs are 20 units");
    assert!(!looks_like_socket_id(&"😀".repeat(20)));
    assert!(looks_like_socket_id(&"€".repeat(20)), "20 units, 60 bytes");
    // which room channels a server subscribes to
    assert!(Dynamic.subscribes_to_room(false));
    assert!(!Dynamic.subscribes_to_room(true));
    assert!(DynamicPrivate.subscribes_to_room(true));
    assert!(!Static.subscribes_to_room(false));
    assert_eq!(SubscriptionMode::default(), Dynamic);
    for mode in [Static, Dynamic, DynamicPrivate] {
        assert_eq!(SubscriptionMode::from_name(mode.name()), Some(mode));
    }
    assert_eq!(SubscriptionMode::from_name("Dynamic"), None);
}

#[test]
fn message_type_numbers() {
    for n in 0..=20u64 {
        match MessageType::from_code(n) {
            Some(t) => assert_eq!(u64::from(t.code()), n),
            None => assert!(n == 0 || n > 13, "{n}"),
        }
    }
    let binary: Vec<u8> = (1..=13)
        .filter_map(MessageType::from_code)
        .filter(|t| t.may_contain_binary())
        .map(MessageType::code)
        .collect();
    assert_eq!(binary, [3, 8, 9, 10, 12]);
    let responses: Vec<u8> = (1..=13)
        .filter_map(MessageType::from_code)
        .filter(|t| t.is_response())
        .map(MessageType::code)
        .collect();
    assert_eq!(responses, [8, 10, 11, 12]);
}
