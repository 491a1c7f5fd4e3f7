//! Tests of `proto::json` on literal wire strings (kept beside it, split out for length).
use super::*;
use serde_json::json;

fn parsed(s: &str) -> Parsed {
    parse(s, 1000).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// What this module writes back for `s`: the value, its verbatim elements in place.
fn rewrite(s: &str) -> String {
    let p = parsed(s);
    let mut out = BytesMut::new();
    match &p.value {
        Value::Array(items) => {
            out.put_u8(b'[');
            write_elements(&mut out, items, &p.verbatim);
            out.put_u8(b']');
        }
        v => match p.verbatim.get(0) {
            Some(text) => out.extend_from_slice(text.as_bytes()),
            None => write_value(&mut out, v),
        },
    }
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn lone_surrogates_decode_to_u_fffd_and_keep_their_text() {
    let p = parsed(r#"["message-with-ack","\ud83d"]"#);
    assert_eq!(p.value, json!(["message-with-ack", "\u{fffd}"]));
    assert_eq!(p.verbatim.get(0), None);
    assert_eq!(p.verbatim.get(1), Some(r#""\ud83d""#));
    // every lone form, as written (case included)
    for (wire, seen) in [
        (r#""\uD83D""#, "\u{fffd}"),
        (r#""\ude00""#, "\u{fffd}"),
        (r#""a\ud83db""#, "a\u{fffd}b"),
        (r#""\ud83d\u0041""#, "\u{fffd}A"),
        (r#""\ud83d\ud83d\ude00""#, "\u{fffd}\u{1f600}"),
        (r#""\ude00\ud83d""#, "\u{fffd}\u{fffd}"),
        (r#""\ud83d\n""#, "\u{fffd}\n"),
        (r#""\udbff\ue000""#, "\u{fffd}\u{e000}"),
    ] {
        let text = format!("[1,{wire}]");
        let p = parsed(&text);
        assert_eq!(p.value, json!([1, seen]), "{wire}");
        assert_eq!(p.verbatim.get(1), Some(wire), "{wire}");
        assert_eq!(rewrite(&text), text);
    }
}

#[test]
fn valid_pairs_and_other_escapes_are_unchanged() {
    let p = parsed(r#"["\ud83d\ude00","\uD83D\uDE00","\"\\\/\b\f\n\r\t\u0041\u00e9\u2028"]"#);
    assert_eq!(p.value, json!(["\u{1f600}", "\u{1f600}", "\"\\/\u{8}\u{c}\n\r\tA\u{e9}\u{2028}"]));
    assert!(p.verbatim.is_empty());
    // written as JSON.stringify writes them
    assert_eq!(
        rewrite(r#"["\ud83d\ude00","\u0001\u001f\u007f","\/"]"#),
        "[\"\u{1f600}\",\"\\u0001\\u001f\u{7f}\",\"/\"]"
    );
}

#[test]
fn the_verbatim_copy_covers_the_whole_element_only() {
    // nested: key and value; numbers in the element normalised; whitespace dropped
    let text = r#"[ "ev" , {"\udc00" : [ "x\ud800", 1e999999, 1.0, -0, 9007199254740993 ] } , 2 ]"#;
    let p = parsed(text);
    assert_eq!(
        p.value,
        json!(["ev", {"\u{fffd}": ["x\u{fffd}", null, 1, 0, 9007199254740992u64]}, 2])
    );
    assert_eq!(p.verbatim.get(0), None);
    assert_eq!(p.verbatim.get(1), Some(r#"{"\udc00":["x\ud800",null,1,0,9007199254740992]}"#));
    assert_eq!(p.verbatim.get(2), None);
    assert_eq!(rewrite(text), r#"["ev",{"\udc00":["x\ud800",null,1,0,9007199254740992]},2]"#);
    // a string with escaped quotes and backslashes before the lone surrogate
    let text = r#"["a\"\\\ud83d\\"]"#;
    assert_eq!(rewrite(text), text);
    // not an array: the whole value
    let p = parsed(r#"{"token":"\ud83d"}"#);
    assert_eq!(p.value, json!({"token": "\u{fffd}"}));
    assert_eq!(p.verbatim.get(0), Some(r#"{"token":"\ud83d"}"#));
}

#[test]
fn verbatim_skip_renumbers() {
    let mut v = parsed(r#"["\ud800",1,"\ud801","\ud802"]"#).verbatim;
    v.skip(1);
    assert_eq!((v.get(0), v.get(1), v.get(2)), (None, Some(r#""\ud801""#), Some(r#""\ud802""#)));
    v.skip(2);
    assert_eq!((v.get(0), v.get(1)), (Some(r#""\ud802""#), None));
}

#[test]
fn numbers_read_and_write_as_javascript() {
    // token -> JSON.stringify(JSON.parse(token)), as node prints it
    for (token, js) in [
        ("0", "0"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0e10", "0"),
        ("1.0", "1"),
        ("1E2", "100"),
        ("1e+2", "100"),
        ("-5", "-5"),
        ("123456789012345", "123456789012345"),
        ("-999999999999999", "-999999999999999"),
        ("9007199254740992", "9007199254740992"),
        ("9007199254740993", "9007199254740992"),
        ("-9007199254740993", "-9007199254740992"),
        ("12345678901234567890", "12345678901234567000"),
        ("123456789012345678", "123456789012345680"),
        ("18446744073709551615", "18446744073709552000"),
        ("1152921504606846976", "1152921504606847000"),
        ("1e20", "100000000000000000000"),
        ("1e21", "1e+21"),
        ("1.5e300", "1.5e+300"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("1e999999", "null"),
        ("-1e999999", "null"),
        ("2e308", "null"),
        ("1e-999999", "0"),
        ("-1e-999999", "0"),
        ("5e-324", "5e-324"),
        ("0.1", "0.1"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("1.5", "1.5"),
        ("-1.5e-7", "-1.5e-7"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("0.0000012345", "0.0000012345"),
        ("123.456", "123.456"),
        ("100.5e1", "1005"),
        ("0.1e1", "1"),
    ] {
        assert_eq!(rewrite(&format!("[{token}]")), format!("[{js}]"), "{token}");
    }
}

#[test]
fn integral_numbers_are_integers_for_handlers() {
    let p = parsed("[5,-5,1.0,1e2,-0,1.5,9007199254740993,1e999999]");
    let Value::Array(v) = p.value else { panic!() };
    assert_eq!(v[0].as_u64(), Some(5));
    assert_eq!(v[1].as_i64(), Some(-5));
    assert_eq!(v[2].as_u64(), Some(1));
    assert_eq!(v[3].as_u64(), Some(100));
    assert_eq!(v[4].as_u64(), Some(0));
    assert_eq!(v[5].as_f64(), Some(1.5));
    assert_eq!(v[6].as_u64(), Some(9007199254740992));
    assert!(v[7].is_null());
}

#[test]
fn depth_is_limited_without_recursion() {
    assert_eq!(parse("[[[1]]]", 3).map(|p| p.value), Ok(json!([[[1]]])));
    assert_eq!(parse("[[[1]]]", 2), Err(JsonError::TooDeep { limit: 2 }));
    assert_eq!(parse(r#"{"a":{"b":[]}}"#, 2), Err(JsonError::TooDeep { limit: 2 }));
    assert!(parse(r#"{"a":{"b":[]}}"#, 3).is_ok());
    assert_eq!(parse("1", 0).map(|p| p.value), Ok(json!(1)));
    // 100,000 deep, arrays and objects: refused as it opens, no stack spent
    for open in ["[", "{\"a\":"] {
        let deep = open.repeat(100_000);
        assert_eq!(parse(&deep, 1000), Err(JsonError::TooDeep { limit: 1000 }), "{open}");
    }
    // 1000 deep is accepted and written back whole
    let text = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    assert_eq!(rewrite(&text), text);
    assert_eq!(parse(&text, 999), Err(JsonError::TooDeep { limit: 999 }));
}

#[test]
fn whitespace_duplicates_and_order_as_json_parse() {
    assert_eq!(parsed(" [ 1 , { \"a\" : [ ] } ] \n\t\r").value, json!([1, {"a": []}]));
    let p = parsed(r#"{"b":1,"a":2,"b":3}"#);
    assert_eq!(rewrite(r#"{"b":1,"a":2,"b":3}"#), r#"{"b":3,"a":2}"#);
    assert_eq!(p.value, json!({"b": 3, "a": 2}));
    assert_eq!(rewrite(r#"[true,false,null,"",[],{}]"#), r#"[true,false,null,"",[],{}]"#);
    assert_eq!(rewrite("\"é\u{1f600}\""), "\"é\u{1f600}\"");
}

#[test]
fn rejects_what_json_parse_rejects() {
    for bad in [
        "",
        " ",
        "[",
        "]",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":1,}",
        "{,}",
        "{1:2}",
        "{'a':1}",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
        "1e+",
        "1.e5",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"\\",
        "\"a\nb\"",
        "\"a\u{1}b\"",
        "\"abc",
        "[\"\\ud83d",
        "tru",
        "nul",
        "NaN",
        "Infinity",
        "-Infinity",
        "undefined",
        "[1}",
        "{\"a\":1]",
    ] {
        assert!(matches!(parse(bad, 1000), Err(JsonError::Syntax)), "{bad:?}");
    }
    // (a number ends where the grammar ends it: "01" is 0 and then "1")
    for bad in ["1 2", "[] x", "{}{}", "\"a\"\"b\"", "[]]", "01", "-01", "0x10", "falsey"] {
        assert_eq!(parse(bad, 1000), Err(JsonError::Trailing), "{bad:?}");
    }
}

#[test]
fn prefixes_never_panic_and_never_parse_to_the_whole() {
    let texts = [
        r#"["a\ud83d",{"k":[1.5e3,-0,null,true]},"\ud83d\ude00"]"#,
        r#"{"a":{"b":["\u0041",12345678901234567890]}}"#,
    ];
    for text in texts {
        let whole = parsed(text);
        for i in 0..text.len() {
            let Some(prefix) = text.get(..i) else { continue };
            if let Ok(p) = parse(prefix, 1000) {
                assert_ne!(p, whole, "{prefix}");
            }
        }
    }
}

#[test]
fn js_number_formatting() {
    let js = |f: f64| {
        let mut out = BytesMut::new();
        put_js_f64(&mut out, f);
        String::from_utf8(out.to_vec()).unwrap()
    };
    assert_eq!(js(f64::INFINITY), "null");
    assert_eq!(js(f64::NAN), "null");
    assert_eq!(js(-0.0), "0");
    assert_eq!(js(100.0), "100");
    assert_eq!(js(-1e21), "-1e+21");
    assert_eq!(js(1e-6), "0.000001");
    assert_eq!(js(1.2345e-7), "1.2345e-7");
    assert_eq!(js(f64::MAX), "1.7976931348623157e+308");
    assert_eq!(js(f64::MIN_POSITIVE), "2.2250738585072014e-308");
    assert_eq!(js(123456789.125), "123456789.125");
}
