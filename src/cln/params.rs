//! JSON-RPC parameters the CLN way: named (`{"a":1}`) or positional (`[1]`), with
//! unknown names and surplus positions refused before anything is changed.

use serde_json::{json, Map, Value};

/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i64 = -32602;

/// A method error with a code, in the shape cln-plugin turns into a JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn invalid(message: impl Into<String>) -> Self {
        RpcError {
            code: INVALID_PARAMS,
            message: message.into(),
        }
    }
}

impl From<RpcError> for anyhow::Error {
    fn from(e: RpcError) -> Self {
        // cln-plugin parses an error whose text is a JSON error object back into one, which
        // is the only way to choose the code it sends.
        anyhow::anyhow!(json!({"code": e.code, "message": e.message}).to_string())
    }
}

/// Normalises `params` into named form against a method's parameter list.
pub fn named(method: &str, params: &Value, names: &[&str], required: usize) -> Result<Map<String, Value>, RpcError> {
    let map = match params {
        Value::Null => Map::new(),
        Value::Object(m) => {
            if let Some(unknown) = m.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(RpcError::invalid(format!(
                    "{method}: unknown parameter '{unknown}' (accepted: {})",
                    list(names)
                )));
            }
            m.clone()
        }
        Value::Array(a) => {
            if a.len() > names.len() {
                return Err(RpcError::invalid(format!(
                    "{method}: takes at most {} parameter(s) ({}), got {}",
                    names.len(),
                    list(names),
                    a.len()
                )));
            }
            names
                .iter()
                .zip(a)
                // lightning-cli sends `null` for a skipped positional parameter.
                .filter(|(_, v)| !v.is_null())
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect()
        }
        other => {
            return Err(RpcError::invalid(format!(
                "{method}: params must be an object or an array, not {other}"
            )))
        }
    };
    if let Some(missing) = names[..required].iter().find(|n| !map.contains_key(**n)) {
        return Err(RpcError::invalid(format!("{method}: missing required parameter '{missing}'")));
    }
    Ok(map)
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_positional_agree() {
        let names = ["scid", "limit"];
        let a = named("m", &json!(["1x1x1", 5]), &names, 1).unwrap();
        let b = named("m", &json!({"scid": "1x1x1", "limit": 5}), &names, 1).unwrap();
        assert_eq!(a, b);
        assert!(named("m", &json!([null, 5]), &names, 0).unwrap().get("scid").is_none());
    }

    #[test]
    fn bad_shapes_are_invalid_params() {
        let names = ["scid"];
        for bad in [json!({"bogus": 1}), json!([1, 2]), json!("x"), json!({})] {
            let e = named("m", &bad, &names, 1).unwrap_err();
            assert_eq!(e.code, INVALID_PARAMS, "{bad}");
        }
        assert!(named("m", &json!([]), &[], 0).unwrap().is_empty());
        let e = named("ballast-status", &json!([1]), &[], 0).unwrap_err();
        assert!(e.message.contains("at most 0"), "{}", e.message);
    }

    #[test]
    fn error_reaches_cln_plugin_as_a_json_object() {
        let e: anyhow::Error = RpcError::invalid("nope").into();
        let v: Value = serde_json::from_str(&e.to_string()).unwrap();
        assert_eq!(v["code"], INVALID_PARAMS);
        assert_eq!(v["message"], "nope");
    }
}
