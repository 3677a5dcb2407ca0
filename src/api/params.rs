//! JSON-RPC parameters the CLN way: named (`{"a":1}`) or positional (`[1]`), with
//! unknown names and surplus positions refused before anything is changed.

pub use super::error::{RpcError, INVALID_PARAMS};
use serde_json::{Map, Value};

/// Normalises `params` into named form against a method's parameter list.
pub fn named(
    method: &str,
    params: &Value,
    names: &[&str],
    required: usize,
) -> Result<Map<String, Value>, RpcError> {
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
        return Err(RpcError::invalid(format!(
            "{method}: missing required parameter '{missing}'"
        )));
    }
    Ok(map)
}

/// Typed access to normalised params, each failure naming the parameter.
pub struct Params<'a> {
    method: &'a str,
    map: Map<String, Value>,
}

impl<'a> Params<'a> {
    pub fn parse(method: &'a str, params: &Value, names: &[&str], required: usize) -> Result<Self, RpcError> {
        Ok(Params {
            method,
            map: named(method, params, names, required)?,
        })
    }

    fn bad(&self, name: &str, want: &str, got: &Value) -> RpcError {
        let shown: String = got.to_string().chars().take(80).collect();
        RpcError::invalid(format!("{}: '{name}' must be {want}, got {shown}", self.method))
    }

    pub fn str(&self, name: &str) -> Result<Option<&str>, RpcError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(name, "a string", v)),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // lightning-cli passes positional words as strings.
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(v) => Err(self.bad(name, "true or false", v)),
        }
    }

    /// A non-negative integer; lightning-cli sends positional numbers as strings, and CLN
    /// accepts a trailing `msat` on amounts, so both are taken.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.bad(name, "a non-negative integer", &Value::Number(n.clone()))),
            Some(Value::String(s)) => {
                let digits = s.strip_suffix("msat").unwrap_or(s);
                if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
                    digits
                        .parse()
                        .map(Some)
                        .map_err(|_| self.bad(name, "a non-negative integer", &Value::String(s.clone())))
                } else {
                    Err(self.bad(name, "a non-negative integer", &Value::String(s.clone())))
                }
            }
            Some(v) => Err(self.bad(name, "a non-negative integer", v)),
        }
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, RpcError> {
        match self.u64(name)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| RpcError::invalid(format!("{}: '{name}' is too large ({v})", self.method))),
        }
    }

    /// Any `FromStr` type given as a string (hashes, preimages, scids, node ids).
    pub fn parsed<T>(&self, name: &str, what: &str) -> Result<Option<T>, RpcError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.str(name)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e| RpcError::invalid(format!("{}: '{name}' must be {what}: {e}", self.method))),
        }
    }

    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    pub fn required<T>(&self, v: Option<T>, name: &str) -> Result<T, RpcError> {
        v.ok_or_else(|| RpcError::invalid(format!("{}: missing required parameter '{name}'", self.method)))
    }
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
    use serde_json::json;

    #[test]
    fn named_and_positional_agree() {
        let names = ["scid", "limit"];
        let a = named("m", &json!(["1x1x1", 5]), &names, 1).unwrap();
        let b = named("m", &json!({"scid": "1x1x1", "limit": 5}), &names, 1).unwrap();
        assert_eq!(a, b);
        assert!(named("m", &json!([null, 5]), &names, 0)
            .unwrap()
            .get("scid")
            .is_none());
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
    fn typed_getters_take_cli_strings_and_refuse_wrong_types() {
        let names = ["amount_msat", "flag", "hash", "label"];
        let p = Params::parse("m", &json!(["1000msat", "true", "ab", 5]), &names, 0).unwrap();
        assert_eq!(p.u64("amount_msat").unwrap(), Some(1000));
        assert_eq!(p.bool("flag").unwrap(), Some(true));
        let e = p
            .parsed::<crate::types::PaymentHash>("hash", "64 hex characters")
            .unwrap_err();
        assert!(e.message.contains("'hash'"), "{}", e.message);
        assert!(p.str("label").is_err());
        let p = Params::parse("m", &json!({"amount_msat": -5}), &names, 0).unwrap();
        assert!(p.u64("amount_msat").is_err());
        let p = Params::parse("m", &json!({"amount_msat": "12x"}), &names, 0).unwrap();
        assert!(p.u64("amount_msat").is_err());
        let p = Params::parse("m", &json!({"amount_msat": 1.5}), &names, 0).unwrap();
        assert!(p.u64("amount_msat").is_err());
    }

    #[test]
    fn error_reaches_cln_plugin_as_a_json_object() {
        let e: anyhow::Error = RpcError::invalid("nope").into();
        let v: Value = serde_json::from_str(&e.to_string()).unwrap();
        assert_eq!(v["code"], INVALID_PARAMS);
        assert_eq!(v["message"], "nope");
    }
}
