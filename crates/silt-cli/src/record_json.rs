//! Records as JSON lines (CLI.md "JSON shapes"): what `silt -o json consume` prints and
//! `silt produce --input json` reads. Keys, values and header values that are not UTF-8 are
//! base64 with a `*_encoding: "base64"` marker.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use silt_client::ConsumerRecord;
use silt_core::batch::Header;

use crate::error::CliError;

/// A value as JSON: text when it is UTF-8, else base64 with `<field>_encoding` set in `obj`.
fn put_bytes(obj: &mut Map<String, Value>, field: &str, b: Option<&Bytes>) {
    let v = match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => {
                obj.insert(format!("{field}_encoding"), json!("base64"));
                Value::String(STANDARD.encode(b))
            }
        },
    };
    obj.insert(field.to_string(), v);
}

/// One consumed record as a JSON object.
pub fn record_to_json(r: &ConsumerRecord) -> Value {
    let mut o = Map::new();
    o.insert("topic".into(), json!(r.topic));
    o.insert("partition".into(), json!(r.partition));
    o.insert("offset".into(), json!(r.offset));
    o.insert("timestamp".into(), json!(r.timestamp_ms));
    put_bytes(&mut o, "key", r.key.as_ref());
    put_bytes(&mut o, "value", r.value.as_ref());
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|h| {
            let mut ho = Map::new();
            ho.insert("key".into(), json!(h.key));
            put_bytes(&mut ho, "value", h.value.as_ref());
            Value::Object(ho)
        })
        .collect();
    o.insert("headers".into(), Value::Array(headers));
    Value::Object(o)
}

/// A record read from a JSON line: what a producer sends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp_ms: Option<i64>,
}

fn get_bytes(o: &Map<String, Value>, field: &str) -> Result<Option<Bytes>, String> {
    let base64 = match o.get(&format!("{field}_encoding")) {
        None | Some(Value::Null) => false,
        Some(Value::String(e)) if e == "base64" => true,
        Some(Value::String(e)) if e == "utf8" || e == "text" => false,
        Some(other) => return Err(format!("{field}_encoding {other} is not \"base64\"")),
    };
    match o.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if base64 => STANDARD
            .decode(s)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| format!("{field} is not base64: {e}")),
        Some(Value::String(s)) => Ok(Some(Bytes::copy_from_slice(s.as_bytes()))),
        Some(other) => Err(format!("{field} must be a string or null, not {other}")),
    }
}

/// Parses one JSON line (`topic`, `partition` and `offset` are ignored: the command line says
/// where records go).
pub fn record_from_json(line: &str) -> Result<JsonRecord, CliError> {
    let bad = |what: String| CliError::failed(format!("bad JSON record: {what}"), "INVALID_RECORD");
    let v: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    let Value::Object(o) = v else {
        return Err(bad("not a JSON object".into()));
    };
    let timestamp_ms = match o.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => Some(t.as_i64().ok_or_else(|| bad(format!("timestamp {t} is not ms")))?),
    };
    let mut headers = Vec::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(hs)) => {
            for h in hs {
                let Value::Object(ho) = h else {
                    return Err(bad(format!("header {h} is not an object")));
                };
                let key = ho
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("header {h} has no string key")))?;
                headers.push(Header {
                    key: key.to_string(),
                    value: get_bytes(ho, "value").map_err(bad)?,
                });
            }
        }
        Some(other) => return Err(bad(format!("headers {other} is not an array"))),
    }
    Ok(JsonRecord {
        key: get_bytes(&o, "key").map_err(bad)?,
        value: get_bytes(&o, "value").map_err(bad)?,
        headers,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&[u8]>, value: Option<&[u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "orders".into(),
            partition: 0,
            offset: 41,
            timestamp_ms: 1_764_547_200_000,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![Header { key: "h".into(), value: Some(Bytes::from("1")) }],
        }
    }

    #[test]
    fn consumed_records_print_in_the_cli_md_shape() {
        let j = record_to_json(&record(Some(b"alice"), Some(b"order-1")));
        assert_eq!(
            j,
            json!({"topic": "orders", "partition": 0, "offset": 41, "timestamp": 1_764_547_200_000i64,
                   "key": "alice", "value": "order-1", "headers": [{"key": "h", "value": "1"}]})
        );
        let j = record_to_json(&record(None, Some(&[0xff, 0x00, 0x80])));
        assert_eq!(j["key"], Value::Null);
        assert_eq!(j["value"], json!("/wCA"));
        assert_eq!(j["value_encoding"], json!("base64"));
        assert!(j.get("key_encoding").is_none());
    }

    #[test]
    fn printed_records_read_back_as_the_same_record() {
        for r in [
            record(Some(b"k"), Some(b"v")),
            record(None, Some(&[0xfe, 0x01])),
            record(Some(&[0x80]), None),
        ] {
            let back = record_from_json(&record_to_json(&r).to_string()).unwrap();
            assert_eq!((back.key, back.value, back.headers), (r.key, r.value, r.headers));
            assert_eq!(back.timestamp_ms, Some(r.timestamp_ms));
        }
        let minimal = record_from_json(r#"{"value": "x"}"#).unwrap();
        assert_eq!(minimal, JsonRecord { value: Some(Bytes::from("x")), ..Default::default() });
    }

    #[test]
    fn malformed_json_records_are_refused() {
        for bad in [
            "not json",
            "[1]",
            r#"{"value": 5}"#,
            r#"{"value": "%%", "value_encoding": "base64"}"#,
            r#"{"value": "x", "value_encoding": "rot13"}"#,
            r#"{"value": "x", "timestamp": "soon"}"#,
            r#"{"value": "x", "headers": [{"value": "no key"}]}"#,
        ] {
            let e = record_from_json(bad).unwrap_err();
            assert_eq!(e.code, "INVALID_RECORD", "{bad}");
        }
    }
}
