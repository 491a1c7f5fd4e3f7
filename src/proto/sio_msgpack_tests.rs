use bytes::{Bytes, BytesMut};
use serde_json::json;

use super::*;
use crate::proto::msgpack::MsgpackError;

fn dec(b: &[u8]) -> Result<(Packet, Vec<Bytes>), DecodeError> {
    decode(&Bytes::copy_from_slice(b), Limits::default())
}

/// A map as notepack.io writes `{k: v, ...}` for short keys and values given as raw bytes.
fn map(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | entries.len() as u8];
    for (k, v) in entries {
        out.push(0xa0 | k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn an_event_is_the_map_notepack_writes() {
    let mut out = BytesMut::new();
    encode_event(&mut out, "/", "hi", &[json!(1)], &[], None, None);
    // {type: 2, data: ["hi", 1], nsp: "/"}
    assert_eq!(
        &out[..],
        &map(&[("type", b"\x02"), ("data", b"\x92\xa2hi\x01"), ("nsp", b"\xa1/")])[..]
    );

    let mut out = BytesMut::new();
    encode_event(&mut out, "/chat", "m", &[], &[], Some(300), Some("0-1"));
    let want = map(&[
        ("type", b"\x02"),
        ("data", b"\x92\xa1m\xa30-1"),
        ("id", b"\xcd\x01\x2c"),
        ("nsp", b"\xa5/chat"),
    ]);
    assert_eq!(&out[..], &want[..]);
}

#[test]
fn binary_stays_in_the_data_with_the_plain_type() {
    let parts = [Bytes::from_static(b"\x01\x02\x03")];
    let mut out = BytesMut::new();
    encode_event(&mut out, "/", "file", &[sio::placeholder(0), json!("x")], &parts, None, None);
    let want = map(&[
        ("type", b"\x02"),
        ("data", b"\x93\xa4file\xc4\x03\x01\x02\x03\xa1x"),
        ("nsp", b"\xa1/"),
    ]);
    assert_eq!(&out[..], &want[..]);

    let (p, bins) = decode(&out.freeze(), Limits::default()).unwrap();
    assert_eq!(p.kind, PacketType::BinaryEvent);
    assert_eq!(p.attachments, 1);
    assert_eq!(p.data, Some(json!(["file", {"_placeholder": true, "num": 0}, "x"])));
    assert_eq!(bins, parts.to_vec());
}

#[test]
fn a_client_packet_with_options_and_an_array_buffer() {
    // socket.io-client writes {type, data, options: {compress}, id, nsp}; an ArrayBuffer is
    // ext 8 of type 0 to notepack.io 2 in Node.
    let packet = map(&[
        ("type", b"\x02"),
        ("data", b"\x92\xa2up\xc7\x02\x00\xab\xcd"),
        ("options", b"\x81\xa8compress\xc3"),
        ("id", b"\x07"),
        ("nsp", b"\xa1/"),
    ]);
    let (p, bins) = dec(&packet).unwrap();
    assert_eq!((p.kind, p.id, p.nsp.as_str()), (PacketType::BinaryEvent, Some(7), "/"));
    assert_eq!(bins, vec![Bytes::from_static(b"\xab\xcd")]);
    assert_eq!(p.event_name(), Some("up"));
}

#[test]
fn a_connect_with_undefined_data_and_a_date() {
    // data: undefined is fixext 1 of type 0.
    let (p, _) =
        dec(&map(&[("type", b"\x00"), ("data", b"\xd4\x00\x00"), ("nsp", b"\xa1/")])).unwrap();
    assert_eq!((p.kind, p.data), (PacketType::Connect, None));
    // notepack.io 2's Date: fixext 8 of type 0, milliseconds (here 1,700,000,000,123).
    let ms: i64 = 1_700_000_000_123;
    let mut date = vec![0xd7, 0x00];
    date.extend_from_slice(&((ms >> 32) as i32).to_be_bytes());
    date.extend_from_slice(&(ms as u32).to_be_bytes());
    let mut data = vec![0x81, 0xa2, b'a', b't'];
    data.extend_from_slice(&date);
    let (p, _) = dec(&map(&[("type", b"\x00"), ("data", &data), ("nsp", b"\xa1/")])).unwrap();
    assert_eq!(p.data, Some(json!({"at": "2023-11-14T22:13:20.123Z"})));
}

#[test]
fn what_the_reference_refuses_and_what_we_refuse_besides() {
    let nsp: &[u8] = b"\xa1/";
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (b"\x92\x02\x90".to_vec(), DecodeError::InvalidPacketType),
        (map(&[("data", b"\x90"), ("nsp", nsp)]), DecodeError::InvalidPacketType),
        (
            map(&[("type", b"\x05"), ("data", b"\x91\xa1e"), ("nsp", nsp)]),
            DecodeError::InvalidPacketType,
        ),
        (
            map(&[("type", b"\xcb\x3f\xf8\0\0\0\0\0\0"), ("nsp", nsp)]),
            DecodeError::InvalidPacketType,
        ),
        (map(&[("type", b"\x02"), ("data", b"\x91\xa1e")]), DecodeError::InvalidNamespace),
        (
            map(&[("type", b"\x02"), ("data", b"\x91\xa1e"), ("nsp", b"\x01")]),
            DecodeError::InvalidNamespace,
        ),
        (map(&[("type", b"\x00"), ("data", b"\x90"), ("nsp", nsp)]), DecodeError::InvalidPayload),
        (map(&[("type", b"\x01"), ("data", b"\x80"), ("nsp", nsp)]), DecodeError::InvalidPayload),
        (map(&[("type", b"\x02"), ("data", b"\x80"), ("nsp", nsp)]), DecodeError::InvalidPayload),
        (map(&[("type", b"\x02"), ("nsp", nsp)]), DecodeError::InvalidPayload),
        (
            map(&[("type", b"\x02"), ("data", b"\x91\xa7connect"), ("nsp", nsp)]),
            DecodeError::InvalidPayload,
        ),
        (
            map(&[("type", b"\x02"), ("data", b"\x91\xc0"), ("nsp", nsp)]),
            DecodeError::InvalidPayload,
        ),
        (map(&[("type", b"\x04"), ("data", b"\x01"), ("nsp", nsp)]), DecodeError::InvalidPayload),
        (map(&[("type", b"\x03"), ("data", b"\x90"), ("nsp", nsp)]), DecodeError::MissingAckId),
        (
            map(&[("type", b"\x03"), ("data", b"\x90"), ("id", b"\xff"), ("nsp", nsp)]),
            DecodeError::InvalidAckId,
        ),
        (
            map(&[("type", b"\x02"), ("data", b"\x91\xa1e"), ("id", b"\xa11"), ("nsp", nsp)]),
            DecodeError::InvalidAckId,
        ),
        (b"\x83\xa4type".to_vec(), DecodeError::Msgpack(MsgpackError::Truncated)),
        (b"[\"json\"]".to_vec(), DecodeError::Msgpack(MsgpackError::Trailing)),
    ];
    for (bytes, want) in cases {
        assert_eq!(dec(&bytes).map(|(p, _)| p), Err(want), "{bytes:02x?}");
    }
    // An event named by a number is the reference's too.
    let (p, _) = dec(&map(&[("type", b"\x02"), ("data", b"\x91\x07"), ("nsp", nsp)])).unwrap();
    assert_eq!(p.data, Some(json!([7])));
}

#[test]
fn nesting_is_bounded_by_max_json_depth() {
    let limits = Limits { max_attachments: 10, max_json_depth: 3 };
    let data = |depth: usize| {
        let mut d = vec![0x92, 0xa1, b'e'];
        d.extend(std::iter::repeat_n(0x91, depth - 1));
        d.push(0x01);
        d
    };
    let ok = map(&[("type", b"\x02"), ("data", &data(3)), ("nsp", b"\xa1/")]);
    assert!(decode(&Bytes::from(ok), limits).is_ok());
    let deep = map(&[("type", b"\x02"), ("data", &data(4)), ("nsp", b"\xa1/")]);
    assert!(matches!(
        decode(&Bytes::from(deep), limits),
        Err(DecodeError::Msgpack(MsgpackError::TooDeep { .. }))
    ));
}

#[test]
fn binary_outside_the_data_is_dropped_and_the_rest_renumbered() {
    let packet = map(&[
        ("type", b"\x02"),
        ("x", b"\xc4\x01\xee"),
        ("data", b"\x92\xa1e\xc4\x01\x11"),
        ("nsp", b"\xa1/"),
    ]);
    let (p, bins) = dec(&packet).unwrap();
    assert_eq!(p.data, Some(json!(["e", {"_placeholder": true, "num": 0}])));
    assert_eq!(bins, vec![Bytes::from_static(b"\x11")]);
}

#[test]
fn every_packet_round_trips() {
    let bin = vec![Bytes::from_static(b"\x00\xff")];
    let packets = [
        (Packet::new(PacketType::Connect, "/", None, None), vec![]),
        (
            Packet::new(PacketType::Connect, "/a", None, Some(json!({"sid": "x", "pid": "y"}))),
            vec![],
        ),
        (Packet::new(PacketType::Disconnect, "/a", None, None), vec![]),
        (
            Packet::new(
                PacketType::ConnectError,
                "/",
                None,
                Some(json!({"message": "no", "data": [1]})),
            ),
            vec![],
        ),
        (Packet::new(PacketType::ConnectError, "/", None, Some(json!("old style"))), vec![]),
        (
            Packet::new(
                PacketType::Event,
                "/",
                Some(1 << 40),
                Some(json!(["e", 1.5, null, {"k": [true]}])),
            ),
            vec![],
        ),
        (Packet::new(PacketType::Ack, "/b", Some(0), Some(json!([]))), vec![]),
        (
            Packet {
                attachments: 1,
                ..Packet::new(
                    PacketType::BinaryAck,
                    "/",
                    Some(9),
                    Some(json!([sio::placeholder(0)])),
                )
            },
            bin.clone(),
        ),
    ];
    for (p, parts) in packets {
        let mut out = BytesMut::new();
        encode(&mut out, &p, &parts);
        assert_eq!(dec(&out), Ok((p.clone(), parts.clone())), "{p:?}");
    }
}

#[test]
fn the_default_parser_can_tell_a_msgpack_client() {
    let mut out = BytesMut::new();
    encode_event(&mut out, "/", "e", &[], &[], None, None);
    assert!(looks_like_msgpack(&out));
    assert!(!looks_like_msgpack(b"\x01\x02"));
    assert!(!looks_like_msgpack(b""));
}
