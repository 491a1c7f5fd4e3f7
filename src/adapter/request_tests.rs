//! The classic adapter's requests and responses as literal wire bytes: what the official
//! `@socket.io/redis-adapter` 8.x and `@socket.io/redis-emitter` 5.x write (the shapes of
//! their `JSON.stringify` calls, in their key order) decode to the request they make; ours
//! are written the same way; hostile and truncated input is refused by name.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::request::*;
use super::wire::WireError;
use crate::broadcast::Selection;
use crate::ns::args::Args;
use crate::ns::Room;
use crate::proto::msgpack;

fn sel(rooms: &[&str], except: &[&str]) -> Selection {
    Selection {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        except: except.iter().map(|r| Room::from(*r)).collect(),
    }
}

fn rooms(list: &[&str]) -> Vec<Room> {
    list.iter().map(|r| Room::from(*r)).collect()
}

fn decode(text: &str) -> Result<Request, WireError> {
    decode_request(&Bytes::copy_from_slice(text.as_bytes()), 100)
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).expect("JSON")
}

#[test]
fn every_request_the_node_adapter_writes_decodes() {
    let cases: Vec<(&str, Request)> = vec![
        (
            r#"{"uid":"a1b2c3d4e5f6","requestId":"x1","type":0,"rooms":["r"]}"#,
            Request {
                uid: Some("a1b2c3d4e5f6".into()),
                request_id: Some("x1".into()),
                body: RequestBody::Sockets { rooms: rooms(&["r"]) },
            },
        ),
        (
            r#"{"uid":"u","requestId":"x2","type":1}"#,
            Request {
                uid: Some("u".into()),
                request_id: Some("x2".into()),
                body: RequestBody::AllRooms,
            },
        ),
        (
            r#"{"uid":"u","type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["c","d"]}"#,
            Request {
                uid: Some("u".into()),
                request_id: None,
                body: RequestBody::Join {
                    targets: Targets::Selection(sel(&["a"], &["b"])),
                    rooms: rooms(&["c", "d"]),
                },
            },
        ),
        (
            r#"{"uid":"u","type":3,"opts":{"rooms":[],"except":[]},"rooms":["c"]}"#,
            Request {
                uid: Some("u".into()),
                request_id: None,
                body: RequestBody::Leave {
                    targets: Targets::Selection(sel(&[], &[])),
                    rooms: rooms(&["c"]),
                },
            },
        ),
        (
            r#"{"uid":"u","type":4,"opts":{"rooms":["a"],"except":[]},"close":true}"#,
            Request {
                uid: Some("u".into()),
                request_id: None,
                body: RequestBody::Disconnect {
                    targets: Targets::Selection(sel(&["a"], &[])),
                    close: true,
                },
            },
        ),
        (
            r#"{"uid":"u","requestId":"x3","type":2,"sid":"s1","room":"r"}"#,
            Request {
                uid: Some("u".into()),
                request_id: Some("x3".into()),
                body: RequestBody::Join {
                    targets: Targets::Socket("s1".into()),
                    rooms: rooms(&["r"]),
                },
            },
        ),
        (
            r#"{"uid":"u","requestId":"x4","type":5,"opts":{"rooms":["a",7],"except":["b"]}}"#,
            Request {
                uid: Some("u".into()),
                request_id: Some("x4".into()),
                body: RequestBody::Fetch { sel: sel(&["a", "7"], &["b"]) },
            },
        ),
        (
            r#"{"uid":"u","type":6,"data":["hello",1,{"a":[null]}]}"#,
            Request {
                uid: Some("u".into()),
                request_id: None,
                body: RequestBody::ServerSideEmit {
                    event: "hello".into(),
                    args: Args::new().arg(1).arg(json!({"a": [null]})),
                },
            },
        ),
        (
            r#"{"uid":"u","requestId":"x5","type":6,"data":["ask"]}"#,
            Request {
                uid: Some("u".into()),
                request_id: Some("x5".into()),
                body: RequestBody::ServerSideEmit { event: "ask".into(), args: Args::new() },
            },
        ),
        // the emitter's: no uid
        (
            r#"{"type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}"#,
            Request {
                uid: None,
                request_id: None,
                body: RequestBody::Join {
                    targets: Targets::Selection(sel(&["a"], &[])),
                    rooms: rooms(&["b"]),
                },
            },
        ),
        (
            r#"{"type":4,"opts":{"rooms":[],"except":[]},"close":false}"#,
            Request {
                uid: None,
                request_id: None,
                body: RequestBody::Disconnect {
                    targets: Targets::Selection(sel(&[], &[])),
                    close: false,
                },
            },
        ),
    ];
    for (wire, want) in cases {
        assert_eq!(decode(wire), Ok(want.clone()), "{wire}");
        // and ours are the same text, byte for byte
        assert_eq!(text(&encode_request(&want)), wire.replace(",7]", ",\"7\"]"), "{wire}");
    }
}

#[test]
fn a_broadcast_with_acks_is_messagepack_with_its_flags_and_binary() {
    let r = Request {
        uid: Some("u".into()),
        request_id: Some("rq".into()),
        body: RequestBody::Broadcast {
            event: "ev".into(),
            args: Args::new().arg("x").binary_arg(Bytes::from_static(&[1, 2])),
            sel: sel(&["room"], &["not"]),
            volatile: true,
            compress: false,
            timeout: Some(Duration::from_millis(2000)),
        },
    };
    let bytes = encode_request(&r);
    assert_ne!(bytes.first(), Some(&b'{'), "MessagePack");
    let d = msgpack::decode(&bytes, 100).expect("MessagePack");
    assert_eq!(
        d.value,
        json!({
            "uid": "u", "requestId": "rq", "type": 7,
            "packet": {"type": 2, "data": ["ev", "x", {"_placeholder": true, "num": 0}]},
            "opts": {"rooms": ["room"], "except": ["not"], "flags": {"volatile": true, "compress": false, "timeout": 2000}},
        })
    );
    assert_eq!(d.binary, vec![Bytes::from_static(&[1, 2])]);
    assert_eq!(decode_request(&bytes, 100), Ok(r));
}

#[test]
fn a_server_side_emit_with_binary_is_messagepack() {
    let r = Request {
        uid: Some("u".into()),
        request_id: None,
        body: RequestBody::ServerSideEmit {
            event: "e".into(),
            args: Args::new().binary_arg(Bytes::from_static(b"bin")),
        },
    };
    let bytes = encode_request(&r);
    assert_ne!(bytes.first(), Some(&b'{'));
    assert_eq!(decode_request(&bytes, 100), Ok(r));
}

#[test]
fn responses_read_by_what_was_asked() {
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let fetch = decode_response(
        &b(r#"{"requestId":"x","sockets":[{"id":"s1","handshake":{"auth":{}},"rooms":["s1","r"],"data":{"n":1}}]}"#),
        100,
    )
    .unwrap();
    assert_eq!(fetch.request_id, "x");
    assert_eq!(
        fetch.sockets().unwrap(),
        vec![WireSocket {
            id: "s1".into(),
            handshake: json!({"auth": {}}),
            rooms: rooms(&["s1", "r"]),
            data: json!({"n": 1}),
        }]
    );
    let all = decode_response(&b(r#"{"requestId":"y","rooms":["a","b"]}"#), 100).unwrap();
    assert_eq!(all.rooms().unwrap(), rooms(&["a", "b"]));
    let count = decode_response(&b(r#"{"type":8,"requestId":"z","clientCount":3}"#), 100).unwrap();
    assert_eq!((count.kind, count.client_count()), (Some(kind::BROADCAST_CLIENT_COUNT), Ok(3)));
    let sse =
        decode_response(&b(r#"{"type":6,"requestId":"w","data":{"sockets":2}}"#), 100).unwrap();
    assert_eq!(sse.reply(), Args::new().arg(json!({"sockets": 2})));
    // a client's ack of a broadcast, as the Node adapter writes it (MessagePack, binary)
    let ack = ack_response("q", &Args::new().binary_arg(Bytes::from_static(&[9])));
    let r = decode_response(&ack, 100).unwrap();
    assert_eq!(r.kind, Some(kind::BROADCAST_ACK));
    assert_eq!(r.reply().binary(), &[Bytes::from_static(&[9])]);
    // an ack without argument: `undefined`, so no `packet` key
    let none = decode_response(&ack_response("q", &Args::new()), 100).unwrap();
    assert!(none.reply().is_empty());
}

#[test]
fn our_responses_are_the_reference_text() {
    assert_eq!(
        text(&rooms_response("a", &rooms(&["x", "y"]))),
        r#"{"requestId":"a","rooms":["x","y"]}"#
    );
    assert_eq!(text(&done_response("a")), r#"{"requestId":"a"}"#);
    assert_eq!(
        text(&client_count_response("a", 4)),
        r#"{"type":8,"requestId":"a","clientCount":4}"#
    );
    assert_eq!(
        text(&server_side_response("a", &Args::new().arg(json!({"sockets": 1})))),
        r#"{"type":6,"requestId":"a","data":{"sockets":1}}"#
    );
    let s = WireSocket {
        id: "i".into(),
        handshake: json!({}),
        rooms: rooms(&["i"]),
        data: json!(null),
    };
    assert_eq!(
        text(&fetch_response("a", &[s])),
        r#"{"requestId":"a","sockets":[{"id":"i","handshake":{},"rooms":["i"],"data":null}]}"#
    );
}

#[test]
fn hostile_requests_are_refused_by_name() {
    for (wire, why) in [
        (r#"{"uid":"u"}"#, "request type"),
        (r#"{"type":99}"#, "unknown request type"),
        (r#"{"type":"2"}"#, "request type"),
        (r#"{"type":-1}"#, "request type"),
        (r#"{"type":2,"rooms":["a"]}"#, "opts or sid"),
        (r#"{"type":2,"opts":{"rooms":{"a":1}},"rooms":[]}"#, "rooms"),
        (r#"{"type":2,"opts":{"rooms":[[1]]},"rooms":[]}"#, "room name"),
        (r#"{"type":5}"#, "opts"),
        (r#"{"type":6,"data":[]}"#, "no event"),
        (r#"{"type":6,"data":[{}]}"#, "event name"),
        (r#"{"type":6,"data":"x"}"#, "data"),
        (r#"{"type":7,"opts":{}}"#, "packet"),
        (r#"{"type":1,"requestId":[]}"#, "requestId"),
        (r#"{"type":1"#, "invalid JSON"),
    ] {
        assert_eq!(decode(wire), Err(WireError::Shape(why)), "{wire}");
    }
    // only `{` starts JSON (as in the reference): anything else is MessagePack
    assert_eq!(decode("[1,2]"), Err(WireError::Msgpack(msgpack::MsgpackError::Trailing)));
    assert_eq!(
        decode_request(&Bytes::from_static(&[0x92, 0x01, 0x02]), 10),
        Err(WireError::Shape("request is not an object"))
    );
    // nesting past the limit
    let deep = format!(r#"{{"type":6,"data":["e",{}1{}]}}"#, "[".repeat(200), "]".repeat(200));
    assert_eq!(decode(&deep), Err(WireError::Shape("invalid JSON")));
    assert!(matches!(
        decode_request(&Bytes::from_static(&[0x91, 0x91, 0x91]), 2),
        Err(WireError::Msgpack(
            msgpack::MsgpackError::TooDeep { .. } | msgpack::MsgpackError::Truncated
        ))
    ));
}

#[test]
fn every_prefix_and_byte_flip_is_refused_or_read_without_panic() {
    let mut inputs: Vec<Bytes> = vec![
        Bytes::from_static(
            br#"{"uid":"u","requestId":"x4","type":5,"opts":{"rooms":["a"],"except":["b"]}}"#,
        ),
        encode_request(&Request {
            uid: Some("u".into()),
            request_id: Some("r".into()),
            body: RequestBody::Broadcast {
                event: "ev".into(),
                args: Args::new().binary_arg(Bytes::from_static(&[1])),
                sel: sel(&["a"], &[]),
                volatile: false,
                compress: true,
                timeout: None,
            },
        }),
        ack_response("q", &Args::new().arg(1)),
    ];
    let mut out = BytesMut::new();
    msgpack::encode(&mut out, &json!({"requestId": "q", "sockets": [{"id": "x"}]}), &[]);
    inputs.push(out.freeze());
    for input in inputs {
        for end in 0..input.len() {
            let cut = input.slice(..end);
            let _ = decode_request(&cut, 50);
            let _ = decode_response(&cut, 50)
                .map(|r| (r.sockets(), r.rooms(), r.client_count(), r.reply()));
        }
        for i in 0..input.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut v = input.to_vec();
                v[i] ^= flip;
                let v = Bytes::from(v);
                let _ = decode_request(&v, 50);
                let _ = decode_response(&v, 50).map(|r| (r.sockets(), r.rooms(), r.reply()));
            }
        }
    }
}

#[test]
fn channels_are_the_reference_names() {
    assert_eq!(request_channel("socket.io", "/"), "socket.io-request#/#");
    assert_eq!(response_channel("k", "/chat"), "k-response#/chat#");
    assert_eq!(specific_response_channel("k", "/", "abc"), "k-response#/#abc#");
}
