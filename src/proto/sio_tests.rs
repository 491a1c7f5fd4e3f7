//! Tests of `proto::sio` on literal wire strings (kept beside it, split out for length).
use super::*;
use serde_json::json;

const MAX: Limits = Limits { max_attachments: 10, max_json_depth: 1000 };

fn dec(s: &str) -> Result<Packet, DecodeError> {
    Packet::decode(s.as_bytes(), MAX)
}

fn enc(p: &Packet) -> String {
    let mut out = BytesMut::new();
    p.encode(&mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

fn pkt(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>, att: usize) -> Packet {
    Packet { attachments: att, ..Packet::new(kind, nsp, id, data) }
}

use PacketType::*;

/// Valid wire strings, the packets they mean; each re-encodes to itself.
fn canonical() -> Vec<(&'static str, Packet)> {
    let ph = placeholder;
    vec![
        ("0", pkt(Connect, "/", None, None, 0)),
        ("0{\"token\":\"123\"}", pkt(Connect, "/", None, Some(json!({"token":"123"})), 0)),
        ("0/admin,", pkt(Connect, "/admin", None, None, 0)),
        ("0/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}", pkt(Connect, "/admin", None, Some(json!({"sid":"oSO0OpakMV_3jnilAAAA"})), 0)),
        ("1", pkt(Disconnect, "/", None, None, 0)),
        ("1/admin,", pkt(Disconnect, "/admin", None, None, 0)),
        ("2[\"hello\",1]", pkt(Event, "/", None, Some(json!(["hello", 1])), 0)),
        ("212[\"hello\"]", pkt(Event, "/", Some(12), Some(json!(["hello"])), 0)),
        ("2/admin,456[\"project:delete\",123]", pkt(Event, "/admin", Some(456), Some(json!(["project:delete", 123])), 0)),
        ("2/é,[\"ü\",{\"a\":[null,true,1.5,\"x\\\"y\"]}]", pkt(Event, "/é", None, Some(json!(["ü", {"a": [null, true, 1.5, "x\"y"]}])), 0)),
        ("2[7,\"x\"]", pkt(Event, "/", None, Some(json!([7, "x"])), 0)),
        ("218446744073709551615[\"max\"]", pkt(Event, "/", Some(u64::MAX), Some(json!(["max"])), 0)),
        ("31[]", pkt(Ack, "/", Some(1), Some(json!([])), 0)),
        ("3/admin,456[\"ok\",{\"n\":2}]", pkt(Ack, "/admin", Some(456), Some(json!(["ok", {"n": 2}])), 0)),
        ("4{\"message\":\"Not authorized\"}", pkt(ConnectError, "/", None, Some(json!({"message":"Not authorized"})), 0)),
        ("4/admin,\"bad\"", pkt(ConnectError, "/admin", None, Some(json!("bad")), 0)),
        ("51-[\"hello\",{\"_placeholder\":true,\"num\":0}]", pkt(BinaryEvent, "/", None, Some(json!(["hello", ph(0)])), 1)),
        ("52-/admin,456[\"up\",{\"_placeholder\":true,\"num\":0},{\"k\":{\"_placeholder\":true,\"num\":1}}]",
            pkt(BinaryEvent, "/admin", Some(456), Some(json!(["up", ph(0), {"k": ph(1)}])), 2)),
        ("610-/admin,456[{\"_placeholder\":true,\"num\":9}]", pkt(BinaryAck, "/admin", Some(456), Some(json!([ph(9)])), 10)),
    ]
}

#[test]
fn decode_canonical() {
    for (wire, want) in canonical() {
        assert_eq!(dec(wire), Ok(want), "{wire}");
    }
}

#[test]
fn encode_canonical() {
    for (wire, p) in canonical() {
        assert_eq!(enc(&p), wire);
    }
}

#[test]
fn decode_lenient_forms() {
    // namespace without the trailing comma, as the reference reads it
    assert_eq!(dec("0/admin"), Ok(pkt(Connect, "/admin", None, None, 0)));
    assert_eq!(dec("1/admin"), Ok(pkt(Disconnect, "/admin", None, None, 0)));
    // leading zeros in ids and counts, JSON whitespace around the data
    assert_eq!(dec("2007[\"a\"]"), Ok(pkt(Event, "/", Some(7), Some(json!(["a"])), 0)));
    assert_eq!(dec("501-[\"a\"]").map(|p| p.attachments), Ok(1));
    assert_eq!(dec("2 [\"a\"] \n"), Ok(pkt(Event, "/", None, Some(json!(["a"])), 0)));
    // "/," is the main namespace spelled out; ids on any type are kept
    assert_eq!(dec("0/,"), Ok(pkt(Connect, "/", None, None, 0)));
    assert_eq!(dec("0/admin,5{}"), Ok(pkt(Connect, "/admin", Some(5), Some(json!({})), 0)));
}

#[test]
fn decode_rejects() {
    use DecodeError as E;
    let cases: &[(&str, DecodeError)] = &[
        ("", E::Empty),
        ("7", E::UnknownType(b'7')),
        ("x2[\"a\"]", E::UnknownType(b'x')),
        ("42[\"a\"]", E::InvalidPayload), // engine '4' left on: CONNECT_ERROR + 2[..]
        ("5[\"a\"]", E::InvalidAttachments),
        ("5-[\"a\"]", E::InvalidAttachments),
        ("51[\"a\"]", E::InvalidAttachments),
        ("5x-[\"a\"]", E::InvalidAttachments),
        ("5", E::InvalidAttachments),
        ("50-[\"a\"]", E::InvalidAttachments),
        ("6 1-[]", E::InvalidAttachments),
        ("511-[\"a\"]", E::TooManyAttachments { limit: 10 }),
        ("6999999999999999999999999-1[]", E::TooManyAttachments { limit: 10 }),
        ("2/a,18446744073709551616[\"a\"]", E::InvalidAckId),
        ("3[]", E::MissingAckId),
        ("3/admin,[]", E::MissingAckId),
        ("61-[{\"_placeholder\":true,\"num\":0}]", E::MissingAckId),
        ("2[\"a\"", E::InvalidJson),
        ("2/admin,abc", E::InvalidJson),
        ("2 ", E::InvalidJson),
        ("0{'a':1}", E::InvalidJson),
        ("2[\"a\"]x", E::TrailingData),
        ("2[\"a\"][\"b\"]", E::TrailingData),
        ("0{}{}", E::TrailingData),
        ("0[]", E::InvalidPayload),
        ("0\"x\"", E::InvalidPayload),
        ("0null", E::InvalidPayload),
        ("1{}", E::InvalidPayload),
        ("1/admin,[]", E::InvalidPayload),
        ("2", E::InvalidPayload),
        ("21", E::InvalidPayload),
        ("2[]", E::InvalidPayload),
        ("2{}", E::InvalidPayload),
        ("2\"a\"", E::InvalidPayload),
        ("2[null]", E::InvalidPayload),
        ("2[[\"a\"]]", E::InvalidPayload),
        ("2[\"connect\"]", E::InvalidPayload),
        ("2[\"connect_error\"]", E::InvalidPayload),
        ("2[\"disconnect\"]", E::InvalidPayload),
        ("2[\"disconnecting\"]", E::InvalidPayload),
        ("2[\"newListener\"]", E::InvalidPayload),
        ("2/admin,1[\"removeListener\",1]", E::InvalidPayload),
        ("51-[\"disconnect\",{\"_placeholder\":true,\"num\":0}]", E::InvalidPayload),
        ("31", E::InvalidPayload),
        ("31{}", E::InvalidPayload),
        ("4", E::InvalidPayload),
        ("4[]", E::InvalidPayload),
        ("41", E::InvalidPayload),
    ];
    for (wire, err) in cases {
        assert_eq!(dec(wire).as_ref(), Err(err), "{wire}");
    }
    assert_eq!(Packet::decode(b"0/ad\xffmin,", MAX), Err(E::InvalidNamespace));
    assert_eq!(Packet::decode(b"2[\"\xff\"]", MAX), Err(E::InvalidJson));
    assert_eq!(
        Packet::decode(
            b"51-[\"a\",{\"_placeholder\":true,\"num\":0}]",
            Limits { max_attachments: 0, ..MAX }
        ),
        Err(E::TooManyAttachments { limit: 0 })
    );
}

/// What the reference answers to packets socket.io-client can send (issue: lone
/// surrogates, deep nesting, out-of-range numbers): each decodes, and its re-encoding is
/// what the Node server writes back.
#[test]
fn javascript_json_decodes_and_writes_back_as_the_reference() {
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases = [
        // (received, written back after decoding)
        (
            r#"21["message-with-ack","\ud83d"]"#.to_owned(),
            r#"21["message-with-ack","\ud83d"]"#.to_owned(),
        ),
        (format!("21[\"message-with-ack\",{deep}]"), format!("21[\"message-with-ack\",{deep}]")),
        (
            "22[\"message-with-ack\",1e999999]".to_owned(),
            "22[\"message-with-ack\",null]".to_owned(),
        ),
        (r#"0{"token":"\uD83D","n":-0}"#.to_owned(), r#"0{"token":"\uD83D","n":0}"#.to_owned()),
        (
            r#"37["\udc00",9007199254740993]"#.to_owned(),
            r#"37["\udc00",9007199254740992]"#.to_owned(),
        ),
        (
            r#"51-["up",{"_placeholder":true,"num":0},"\ud83d"]"#.to_owned(),
            r#"51-["up",{"_placeholder":true,"num":0},"\ud83d"]"#.to_owned(),
        ),
        (r#"2/admin,["\ud83d"]"#.to_owned(), r#"2/admin,["\ud83d"]"#.to_owned()),
    ];
    for (wire, back) in cases {
        let p = dec(&wire).unwrap_or_else(|e| panic!("{wire}: {e}"));
        assert_eq!(enc(&p), back);
    }
    let p = dec(r#"21["message-with-ack","\ud83d"]"#).unwrap();
    assert_eq!(p.data, Some(json!(["message-with-ack", "\u{fffd}"])));
    assert_eq!(p.verbatim.get(1), Some(r#""\ud83d""#));
    let p = dec(r#"51-["up",{"_placeholder":true,"num":0},"\ud83d"]"#).unwrap();
    let (p, _) = Reassembler::new(p).push_all([Bytes::from_static(b"x")]).finish().unwrap();
    assert_eq!(p.verbatim.get(2), Some(r#""\ud83d""#));
}

#[test]
fn json_depth_limit_is_the_configured_one() {
    let limits = |d| Limits { max_json_depth: d, ..MAX };
    // the data array is level 1
    assert!(Packet::decode(b"2[\"a\",[[1]]]", limits(3)).is_ok());
    assert_eq!(
        Packet::decode(b"2[\"a\",[[1]]]", limits(2)),
        Err(DecodeError::JsonTooDeep { limit: 2 })
    );
    assert_eq!(
        Packet::decode(b"0{\"a\":{\"b\":{}}}", limits(2)),
        Err(DecodeError::JsonTooDeep { limit: 2 })
    );
    let deep = format!("2[\"a\",{}]", "{\"k\":".repeat(100_000));
    assert_eq!(dec(&deep), Err(DecodeError::JsonTooDeep { limit: 1000 }));
}

#[test]
fn deep_json_is_rejected_not_overflowed() {
    let wire = format!("2[\"a\",{}{}]", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(dec(&wire), Err(DecodeError::JsonTooDeep { limit: 1000 }));
}

/// Every prefix and every single-byte corruption of valid packets decodes
/// to something or fails cleanly (never panics), and a proper prefix
/// never decodes to the original packet.
#[test]
fn prefixes_and_corruptions_never_panic() {
    for (wire, want) in canonical() {
        let bytes = wire.as_bytes();
        for i in 0..bytes.len() {
            let prefix = bytes.get(..i).unwrap();
            // ("0/admin" is "0/admin," without its optional last comma)
            let optional_comma = i + 1 == bytes.len() && wire.ends_with(',');
            if let (Ok(p), false) = (Packet::decode(prefix, MAX), optional_comma) {
                assert_ne!(p, want, "{wire} prefix {i}");
            }
            for b in [0u8, b'"', b',', b'-', b'/', b'0', b'[', b'{', 0xff] {
                let mut v = bytes.to_vec();
                v[i] = b;
                let _ = Packet::decode(&v, MAX);
            }
        }
    }
}

#[test]
fn event_name() {
    assert_eq!(dec("2[\"chat\",1]").unwrap().event_name(), Some("chat"));
    assert_eq!(dec("2[1,\"chat\"]").unwrap().event_name(), None);
    assert_eq!(dec("31[\"chat\"]").unwrap().event_name(), None);
    assert_eq!(
        dec("51-[\"up\",{\"_placeholder\":true,\"num\":0}]").unwrap().event_name(),
        Some("up")
    );
}

fn event(nsp: &str, ev: &str, args: &[Value], id: Option<u64>, att: usize) -> String {
    let mut out = BytesMut::new();
    encode_event(&mut out, nsp, ev, args, &Verbatim::default(), id, att);
    String::from_utf8(out.to_vec()).unwrap()
}

fn ack(nsp: &str, id: u64, args: &[Value], att: usize) -> String {
    let mut out = BytesMut::new();
    encode_ack(&mut out, nsp, id, args, &Verbatim::default(), att);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn fast_event_encoding() {
    assert_eq!(event("/", "chat", &[], None, 0), "2[\"chat\"]");
    assert_eq!(event("/", "chat", &[json!("hi")], None, 0), "2[\"chat\",\"hi\"]");
    assert_eq!(event("", "chat", &[json!(1)], None, 0), "2[\"chat\",1]");
    assert_eq!(
        event("/admin", "a\"b\n", &[json!({"x": [1, null]}), json!("é\u{1}")], Some(7), 0),
        "2/admin,7[\"a\\\"b\\n\",{\"x\":[1,null]},\"é\\u0001\"]"
    );
    assert_eq!(
        event("/admin", "file", &[placeholder(0)], None, 1),
        "51-/admin,[\"file\",{\"_placeholder\":true,\"num\":0}]"
    );
    // same bytes as the general encoder, and decodes back
    let args = [json!({"k": [true, 2.5]}), json!("s"), placeholder(0), placeholder(1)];
    let wire = event("/n", "ev", &args, Some(3), 2);
    let mut data = vec![json!("ev")];
    data.extend(args.iter().cloned());
    let p = pkt(BinaryEvent, "/n", Some(3), Some(Value::Array(data)), 2);
    assert_eq!(wire, enc(&p));
    assert_eq!(dec(&wire), Ok(p));
}

#[test]
fn fast_ack_encoding() {
    assert_eq!(ack("/", 1, &[], 0), "31[]");
    assert_eq!(ack("/", 42, &[json!("ok"), json!(2)], 0), "342[\"ok\",2]");
    assert_eq!(ack("/admin", 0, &[json!(null)], 0), "3/admin,0[null]");
    assert_eq!(
        ack("/admin", 5, &[placeholder(0)], 1),
        "61-/admin,5[{\"_placeholder\":true,\"num\":0}]"
    );
    let p = pkt(BinaryAck, "/", Some(9), Some(json!([placeholder(0), "x"])), 1);
    assert_eq!(ack("/", 9, &[placeholder(0), json!("x")], 1), enc(&p));
}

#[test]
fn reserved_events() {
    for name in
        ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]
    {
        assert!(is_reserved_event(name), "{name}");
    }
    for name in ["", "message", "Connect", "connected", "error", "ping"] {
        assert!(!is_reserved_event(name), "{name}");
    }
}

#[test]
fn placeholders() {
    assert_eq!(placeholder(3), json!({"_placeholder": true, "num": 3}));
    assert_eq!(
        serde_json::to_string(&placeholder(0)).unwrap(),
        "{\"_placeholder\":true,\"num\":0}"
    );
    let v = json!(["a", placeholder(0), {"k": [placeholder(1), {"_placeholder": false, "num": 2}]},
                   {"_placeholder": true, "num": 5, "inner": placeholder(9)}]);
    assert_eq!(count_placeholders(&v), 3);
    assert_eq!(count_placeholders(&json!("x")), 0);
}

fn reassemble(wire: &str, bins: &[&'static [u8]]) -> Result<(Packet, Vec<Bytes>), DecodeError> {
    let mut r = Reassembler::new(dec(wire)?);
    assert_eq!(r.received(), 0);
    for (i, b) in bins.iter().enumerate() {
        let done = r.push(Bytes::from_static(b));
        assert_eq!(done, i + 1 >= r.expected(), "{wire} after {}", i + 1);
    }
    r.finish()
}

#[test]
fn reassembly() {
    let wire = "52-[\"up\",{\"_placeholder\":true,\"num\":1},[{\"_placeholder\":true,\"num\":0}]]";
    let (p, bins) = reassemble(wire, &[b"\x00\x01", b""]).unwrap();
    assert_eq!(p, dec(wire).unwrap());
    assert_eq!(bins, vec![Bytes::from_static(b"\x00\x01"), Bytes::new()]);

    // an attachment no placeholder refers to is allowed, as in the reference
    assert!(reassemble("62-1[{\"_placeholder\":true,\"num\":0}]", &[b"a", b"b"]).is_ok());
}

#[test]
fn reassembly_rejects() {
    use DecodeError as E;
    let count = |expected, received| Err(E::AttachmentCount { expected, received });
    assert_eq!(reassemble("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", &[]), count(1, 0));
    assert_eq!(reassemble("52-[\"a\",{\"_placeholder\":true,\"num\":0}]", &[b"x"]), count(2, 1));
    assert_eq!(
        reassemble("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", &[b"x", b"y"]),
        count(1, 2)
    );
    for bad in ["1", "-1", "0.5", "\"0\"", "null", "1e0"] {
        let wire = format!("51-[\"a\",{{\"k\":{{\"_placeholder\":true,\"num\":{bad}}}}}]");
        assert_eq!(reassemble(&wire, &[b"x"]).map(|_| ()), Err(E::InvalidPlaceholder), "{wire}");
    }
    assert_eq!(
        reassemble("51-[\"a\",{\"_placeholder\":true}]", &[b"x"]).map(|_| ()),
        Err(E::InvalidPlaceholder)
    );
}

#[test]
fn offset_is_the_last_argument() {
    let enc = |args: &[Value], att: usize, nsp: &str| {
        let mut out = BytesMut::new();
        encode_event_with_offset(
            &mut out,
            nsp,
            "ev",
            args,
            &Verbatim::default(),
            None,
            att,
            Some("Qx3_.2.1a"),
        );
        String::from_utf8(out.to_vec()).unwrap()
    };
    assert_eq!(enc(&[], 0, "/"), r#"2["ev","Qx3_.2.1a"]"#);
    assert_eq!(enc(&[json!("a"), json!(1)], 0, "/"), r#"2["ev","a",1,"Qx3_.2.1a"]"#);
    assert_eq!(
        enc(&[placeholder(0)], 1, "/chat"),
        r#"51-/chat,["ev",{"_placeholder":true,"num":0},"Qx3_.2.1a"]"#
    );
    // The packet decodes with the offset as one more argument.
    let p = dec(&enc(&[json!({"k": [1]})], 0, "/")).unwrap();
    assert_eq!(p.data, Some(json!(["ev", {"k": [1]}, "Qx3_.2.1a"])));
}
