//! permessage-deflate (RFC 7692): negotiating the extension at the upgrade, compressing
//! outgoing messages (once per broadcast, no context kept) and inflating incoming ones with
//! the thread's one inflater, its output bounded. Part of the transport layer's WebSocket
//! module; negotiation and the codec are sans-IO: they do no I/O.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::frame::{frame_header, Opcode, FIN, MAX_SERVER_HEADER, RSV1};
use super::WsError;

/// What a sync flush ends with; stripped from a compressed message and added back before
/// inflating it (RFC 7692 §7.2.1 and §7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Compression level of outgoing messages. A broadcast is compressed once and sent to many,
/// so bandwidth saved is multiplied and CPU spent is not: the default level, not the fastest.
const COMPRESSION_LEVEL: u32 = 6;

thread_local! {
    /// The thread's raw-deflate compressor, reset before each message.
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
    /// The thread's raw-deflate inflater, reset (window zeroed) before each message.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Negotiated permessage-deflate parameters. We always answer with
/// `server_no_context_takeover` and `client_no_context_takeover` (RFC 7692 §7.1.1 lets the
/// server include both in any response), so every message is compressed independently: a
/// broadcast can be compressed ONCE and the same bytes sent to every recipient, and no
/// per-connection inflate window is kept between messages.
///
/// As that is the only configuration we agree to, there is nothing to record: `Some(Deflate)`
/// in [`WsConfig`](super::WsConfig) means "negotiated".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Deflate;

// ---------------------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------------------

/// Parses the request's `Sec-WebSocket-Extensions` header values; returns the parameters and
/// the response header value to send, or `None` when no acceptable permessage-deflate offer
/// exists. Offers are tried in the client's order of preference; one is declined (and the
/// next one tried) when it has an unknown, repeated or invalid parameter (RFC 7692 §7.1), or
/// asks `server_max_window_bits` below 15, which the miniz_oxide backend of flate2 cannot
/// compress with.
pub(crate) fn negotiate_deflate<'a>(
    offers: impl Iterator<Item = &'a str>,
) -> Option<(Deflate, String)> {
    offers.flat_map(|value| value.split(',')).find_map(accept_offer)
}

/// One offer (`name; param; param=value`), accepted or not.
fn accept_offer(offer: &str) -> Option<(Deflate, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    // Each parameter may appear once: server_no_context_takeover, client_no_context_takeover,
    // server_max_window_bits, client_max_window_bits.
    let mut seen = [false; 4];
    for part in parts.filter(|p| !p.is_empty()) {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim_end(), Some(unquote(value.trim_start())?)),
            None => (part, None),
        };
        let slot = if name.eq_ignore_ascii_case("server_no_context_takeover") {
            value.is_none().then_some(0)?
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            value.is_none().then_some(1)?
        } else if name.eq_ignore_ascii_case("server_max_window_bits") {
            // We compress with a 32 KiB window only: a smaller one is a configuration we
            // cannot honour, so the offer is declined.
            (window_bits(value?)? == 15).then_some(2)?
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            // The client may use any window up to 15 bits: we inflate with the full one.
            match value {
                Some(v) => window_bits(v).map(|_| 3)?,
                None => 3,
            }
        } else {
            return None;
        };
        let seen = seen.get_mut(slot)?;
        if *seen {
            return None;
        }
        *seen = true;
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    // A server accepts a server_max_window_bits offer by echoing it with a value no larger
    // (RFC 7692 §7.1.2.1).
    if seen.get(2).copied().unwrap_or(false) {
        response.push_str("; server_max_window_bits=15");
    }
    Some((Deflate, response))
}

/// A parameter value, token or quoted-string (RFC 6455 §9.1), without its quotes.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains('"') && !inner.contains('\\')).then_some(inner)
        }
        None => (!value.contains('"')).then_some(value),
    }
}

/// A window-bits value: a decimal 8..=15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits))
}

// ---------------------------------------------------------------------------------------
// Compression (server → client)
// ---------------------------------------------------------------------------------------

/// A complete server→client frame, compressed (RSV1 set): raw deflate with a fresh context,
/// sync-flushed, trailing `00 00 ff ff` removed (RFC 7692 §7.2.1). Returns `None` when
/// compression does not make it smaller (the caller then sends the plain frame).
///
/// Each call resets a compressor of about 300 KiB kept per thread, so compressing pays off
/// only above some size: socket.io's default threshold is 1024 bytes.
pub(crate) fn encode_compressed_frame(opcode_text: bool, payload: &[u8]) -> Option<Bytes> {
    let opcode = if opcode_text { Opcode::Text } else { Opcode::Binary };
    let first = FIN | RSV1 | opcode.bits();
    let fresh = || Compress::new(Compression::new(COMPRESSION_LEVEL), false);
    COMPRESSOR
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let compress = slot.get_or_insert_with(fresh);
                // Reset before, not after: a previous call may have stopped half-way.
                compress.reset();
                compress_frame(compress, first, payload)
            }
            // Re-entered (cannot happen: nothing here calls back) - use a private one.
            Err(_) => compress_frame(&mut fresh(), first, payload),
        })
        // The thread is being torn down: its compressor is gone.
        .unwrap_or_else(|_| compress_frame(&mut fresh(), first, payload))
}

/// Compresses `payload` into one allocation holding the header and the deflate data.
fn compress_frame(compress: &mut Compress, first: u8, payload: &[u8]) -> Option<Bytes> {
    // Room for the longest header, then the deflate data: the result is only useful when
    // smaller than the payload, and a sync flush ends with DEFLATE_TAIL, so anything that
    // does not fit in payload + tail is not worth finishing.
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER + payload.len() + DEFLATE_TAIL.len());
    out.resize(MAX_SERVER_HEADER, 0);
    compress.compress_vec(payload, &mut out, FlushCompress::Sync).ok()?;
    // All input taken and room left over: the flush is complete.
    if compress.total_in() != payload.len() as u64 || out.len() == out.capacity() {
        return None;
    }
    let data_len = out.len().checked_sub(MAX_SERVER_HEADER + DEFLATE_TAIL.len())?;
    if data_len >= payload.len() || !out.ends_with(&DEFLATE_TAIL) {
        return None;
    }
    out.truncate(MAX_SERVER_HEADER + data_len);
    let (header, header_len) = frame_header(first, data_len);
    let start = MAX_SERVER_HEADER - header_len;
    out.get_mut(start..MAX_SERVER_HEADER)?.copy_from_slice(header.get(..header_len)?);
    // No copy: the vector becomes the shared buffer and the slice skips the unused room.
    Some(Bytes::from(out).slice(start..))
}

// ---------------------------------------------------------------------------------------
// Inflation (client → server)
// ---------------------------------------------------------------------------------------

/// Inflates one compressed message (the tail added back), its output bounded by `limit`.
pub(super) fn inflate(data: &[u8], limit: usize) -> Result<Bytes, WsError> {
    INFLATER
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                let inflater = slot.get_or_insert_with(|| Decompress::new(false));
                // A full reset zeroes the window: the inflater is shared by every connection
                // of the thread, and a client that back-references past the start of its
                // message must read zeros, never another connection's data.
                inflater.reset(false);
                inflate_with(inflater, data, limit)
            }
            // Re-entered (cannot happen: nothing here calls back) - use a private one.
            Err(_) => inflate_with(&mut Decompress::new(false), data, limit),
        })
        // The thread is being torn down: its inflater is gone.
        .unwrap_or_else(|_| inflate_with(&mut Decompress::new(false), data, limit))
}

/// Inflates `data` then [`DEFLATE_TAIL`] with a freshly reset `inflater`.
fn inflate_with(inflater: &mut Decompress, data: &[u8], limit: usize) -> Result<Bytes, WsError> {
    let too_big = WsError::MessageTooBig { limit };
    // Never more than limit + 1 bytes of room: one byte over is enough to know.
    let cap = limit.saturating_add(1);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).clamp(64, 64 * 1024).min(cap));
    for (mut input, flush) in
        [(data, FlushDecompress::None), (&DEFLATE_TAIL[..], FlushDecompress::Sync)]
    {
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(too_big);
                }
                out.reserve(out.len().max(4096).min(cap - out.len()));
            }
            let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
            let status =
                inflater.decompress_vec(input, &mut out, flush).map_err(|_| WsError::Inflate)?;
            let consumed = usize::try_from(inflater.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = inflater.total_out() - out_before;
            input = input.get(consumed..).unwrap_or_default();
            if out.len() > limit {
                return Err(too_big);
            }
            if status == Status::StreamEnd {
                // A final block (BFINAL, RFC 7692 §7.2.3.4) ended the message.
                return Ok(Bytes::from(out));
            }
            if out.len() < out.capacity() {
                // Room was left: everything the input gives is out.
                if input.is_empty() {
                    break;
                }
                if consumed == 0 && produced == 0 {
                    // Input left, room left, and no progress: the data is not deflate.
                    return Err(WsError::Inflate);
                }
            }
        }
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::super::frame::tests::{
        cfg, client_frame, decode_all, decode_one, decode_pieces, err, mask_frame, text,
    };
    use super::super::frame::MASK;
    use super::super::{WsConfig, WsMessage};
    use super::*;

    #[test]
    fn rfc7692_compressed_hello() {
        let frame = mask_frame(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(decode_one(&cfg(true), &frame).unwrap(), text("Hello"));
        // Not negotiated: RSV1 is a reserved bit.
        assert!(matches!(err(&frame), WsError::ReservedBits));
    }

    #[test]
    fn rfc7692_compressed_fragments() {
        let mut bytes = mask_frame(&[0x41, 0x03, 0xf2, 0x48, 0xcd]);
        bytes.extend(client_frame(0x89, b"between"));
        bytes.extend(mask_frame(&[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]));
        let expected = vec![WsMessage::Ping(Bytes::from_static(b"between")), text("Hello")];
        assert_eq!(decode_all(&cfg(true), &bytes).unwrap(), expected);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(decode_pieces(&cfg(true), &[a, b]).unwrap(), expected, "split at {at}");
        }
    }

    #[test]
    fn rfc7692_stored_block_and_final_block() {
        let stored = [0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(decode_one(&cfg(true), &mask_frame(&stored)).unwrap(), text("Hello"));
        let bfinal = [0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(decode_one(&cfg(true), &mask_frame(&bfinal)).unwrap(), text("Hello"));
    }

    #[test]
    fn no_window_is_kept_between_messages() {
        // RFC 7692 §7.2.3.2: the second "Hello" back-references the first message. Without
        // context takeover it must not decode to "Hello" (the window was reset).
        let mut bytes = mask_frame(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        bytes.extend(mask_frame(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]));
        match decode_all(&cfg(true), &bytes) {
            Ok(messages) => {
                assert_eq!(messages[0], text("Hello"));
                assert_ne!(messages[1], text("Hello"));
            }
            Err(e) => assert!(matches!(e, WsError::Inflate), "{e:?}"),
        }
    }

    #[test]
    fn compressed_round_trip() {
        let payload: String = (0..2000)
            .map(|i| format!("{{\"event\":\"tick\",\"n\":{i}}}"))
            .collect::<Vec<_>>()
            .concat();
        let frame = encode_compressed_frame(true, payload.as_bytes()).expect("compressible");
        assert!(frame.len() < payload.len() / 4, "{} vs {}", frame.len(), payload.len());
        assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
        assert_eq!(frame[1] & MASK, 0, "server frames are unmasked");
        assert!(!frame.ends_with(&DEFLATE_TAIL));
        let got = decode_one(&cfg(true), &mask_frame(&frame)).unwrap();
        assert_eq!(got, text(&payload));

        // The same deflate data over several fragments, the first with RSV1.
        assert_eq!(frame[1], 126, "16-bit length form");
        let data = &frame[4..];
        let thirds = data.len() / 3;
        let mut bytes = client_frame(0x41, &data[..thirds]);
        bytes.extend(client_frame(0x00, &data[thirds..2 * thirds]));
        bytes.extend(client_frame(0x80, &data[2 * thirds..]));
        assert_eq!(decode_one(&cfg(true), &bytes).unwrap(), text(&payload));

        let binary = encode_compressed_frame(false, &[0u8; 10_000]).unwrap();
        assert_eq!(binary[0], 0xc2);
        let got = decode_one(&cfg(true), &mask_frame(&binary)).unwrap();
        assert_eq!(got, WsMessage::Binary(Bytes::from(vec![0u8; 10_000])));

        // Compressing again gives the same bytes: nothing is carried over between calls.
        assert_eq!(encode_compressed_frame(true, payload.as_bytes()).unwrap(), frame);
    }

    #[test]
    fn compression_that_does_not_shrink_is_refused() {
        assert_eq!(encode_compressed_frame(true, b""), None);
        assert_eq!(encode_compressed_frame(true, b"a"), None);
        // xorshift noise does not compress.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(encode_compressed_frame(false, &noise), None);
    }

    #[test]
    fn inflated_size_is_bounded() {
        let bomb = encode_compressed_frame(false, &vec![0u8; 1 << 20]).unwrap();
        assert!(bomb.len() < 2000);
        let small = WsConfig { max_message_size: 10_000, deflate: Some(Deflate) };
        let e = decode_all(&small, &mask_frame(&bomb)).unwrap_err();
        assert!(matches!(e, WsError::MessageTooBig { limit: 10_000 }), "{e:?}");
        // Exactly at the limit is fine.
        let exact = encode_compressed_frame(false, &vec![0u8; 10_000]).unwrap();
        assert!(decode_all(&small, &mask_frame(&exact)).is_ok());
        let over = encode_compressed_frame(false, &vec![0u8; 10_001]).unwrap();
        assert!(decode_all(&small, &mask_frame(&over)).is_err());
    }

    #[test]
    fn corrupt_deflate_data_is_an_error() {
        // Block type 3 is invalid.
        let frame = client_frame(0xc1, &[0xff, 0xff, 0xff]);
        assert!(matches!(decode_all(&cfg(true), &frame), Err(WsError::Inflate)));
    }

    const RESPONSE: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn negotiate(values: &[&str]) -> Option<String> {
        negotiate_deflate(values.iter().copied()).map(|(Deflate, response)| response)
    }

    #[test]
    fn negotiation_accepts_common_offers() {
        let accepted = [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=15; server_no_context_takeover",
            "permessage-deflate;client_no_context_takeover;client_max_window_bits=\"10\"",
            "Permessage-Deflate ; Server_No_Context_Takeover",
        ];
        for offer in accepted {
            assert_eq!(negotiate(&[offer]).as_deref(), Some(RESPONSE), "{offer}");
        }
        let with_bits = negotiate(&["permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert_eq!(with_bits, format!("{RESPONSE}; server_max_window_bits=15"));
    }

    #[test]
    fn negotiation_declines_bad_offers_and_tries_the_next() {
        let declined = [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=\"15",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=15",
            "permessage-deflate; unknown_param",
        ];
        for offer in declined {
            assert_eq!(negotiate(&[offer]), None, "{offer}");
        }
        // Several offers in one value, and over several header lines: the first acceptable.
        let list = concat!(
            "permessage-deflate; server_max_window_bits=10, ",
            "permessage-deflate; server_max_window_bits=15"
        );
        assert_eq!(negotiate(&[list]), Some(format!("{RESPONSE}; server_max_window_bits=15")));
        let lines =
            ["foo, permessage-deflate; bogus", "permessage-deflate; client_max_window_bits"];
        assert_eq!(negotiate(&lines).as_deref(), Some(RESPONSE));
        assert_eq!(negotiate(&[]), None);
    }
}
