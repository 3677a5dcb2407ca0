//! Checks for the parts of the plugin protocol that CLN's schema folder does
//! not cover: the JSON-RPC 2.0 envelope, `getmanifest` and `init` (whose
//! rules live in lightningd's C code and the plugin documentation), and the
//! plugin's `log` notifications.
//!
//! Each checker collects *all* problems it can find, so a failing test shows
//! the whole picture at once.

use super::schema::schemas;
use serde_json::{json, Map, Value};
use std::fmt;

/// A JSON-RPC error object, as returned by the plugin or by the fake node.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonRpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl JsonRpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        JsonRpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            v["data"] = d.clone();
        }
        v
    }
}

impl fmt::Display for JsonRpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JSON-RPC error {}: {}", self.code, self.message)?;
        if let Some(d) = &self.data {
            write!(f, " (data: {d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for JsonRpcError {}

/// Standard JSON-RPC codes lightningd uses.
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INVALID_REQUEST: i64 = -32600;

/// A message the plugin wrote on its stdout, after envelope checks.
#[derive(Clone, Debug)]
pub enum FromPlugin {
    Response {
        id: Value,
        outcome: Result<Value, JsonRpcError>,
    },
    Notification {
        method: String,
        params: Value,
    },
}

/// Checks the envelope of a message written by the plugin.
///
/// lightningd expects `jsonrpc: "2.0"` and either a response (an `id` the
/// plugin was given, plus exactly one of `result`/`error`) or a
/// notification (`method` and object `params`, no `id`). Plugins cannot send
/// requests on this channel: they use the RPC socket for that.
pub fn parse_plugin_message(msg: &Value) -> Result<FromPlugin, String> {
    let obj = msg
        .as_object()
        .ok_or_else(|| format!("message is not a JSON object: {msg}"))?;
    let mut problems = Vec::new();
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        problems.push(format!("`jsonrpc` must be \"2.0\", got {:?}", obj.get("jsonrpc")));
    }
    let result = if let Some(id) = obj.get("id") {
        if !(id.is_string() || id.is_number()) {
            problems.push(format!("`id` must be a string or a number, got {id}"));
        }
        if obj.contains_key("method") {
            problems.push(
                "plugins may not send requests over stdout (message has both `id` and `method`)".into(),
            );
        }
        for k in obj.keys() {
            if !matches!(
                k.as_str(),
                "jsonrpc" | "id" | "result" | "error" | "method" | "params"
            ) {
                problems.push(format!("unexpected member `{k}` in response"));
            }
        }
        match (obj.get("result"), obj.get("error")) {
            (Some(r), None) => Some(FromPlugin::Response {
                id: id.clone(),
                outcome: Ok(r.clone()),
            }),
            (None, Some(e)) => match parse_error_object(e) {
                Ok(err) => Some(FromPlugin::Response {
                    id: id.clone(),
                    outcome: Err(err),
                }),
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
            (Some(_), Some(_)) => {
                problems.push("response has both `result` and `error`".into());
                None
            }
            (None, None) => {
                problems.push("response has neither `result` nor `error`".into());
                None
            }
        }
    } else {
        match obj.get("method") {
            Some(Value::String(method)) => {
                let params = obj.get("params").cloned().unwrap_or(Value::Null);
                if !params.is_object() {
                    problems.push(format!(
                        "notification `{method}`: `params` must be an object, got {params}"
                    ));
                }
                for k in obj.keys() {
                    if !matches!(k.as_str(), "jsonrpc" | "method" | "params") {
                        problems.push(format!("unexpected member `{k}` in notification `{method}`"));
                    }
                }
                Some(FromPlugin::Notification {
                    method: method.clone(),
                    params,
                })
            }
            Some(other) => {
                problems.push(format!("`method` must be a string, got {other}"));
                None
            }
            None => {
                problems.push("message has neither `id` nor `method`".into());
                None
            }
        }
    };
    match (problems.is_empty(), result) {
        (true, Some(r)) => Ok(r),
        _ => Err(format!(
            "invalid JSON-RPC message ({}): {msg}",
            problems.join("; ")
        )),
    }
}

/// `error` member of a response: `code` integer, `message` string, optional
/// `data`.
pub fn parse_error_object(e: &Value) -> Result<JsonRpcError, String> {
    let obj = e
        .as_object()
        .ok_or_else(|| format!("`error` must be an object, got {e}"))?;
    let code = obj
        .get("code")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("`error.code` must be an integer: {e}"))?;
    let message = obj
        .get("message")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`error.message` must be a string: {e}"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "code" | "message" | "data"))
    {
        return Err(format!("unexpected member `{k}` in error object: {e}"));
    }
    Ok(JsonRpcError {
        code,
        message: message.to_string(),
        data: obj.get("data").cloned(),
    })
}

/// A request as lightningd's RPC socket expects it (used by the fake node on
/// what the plugin sends): `jsonrpc: "2.0"`, an `id`, a string `method`,
/// and `params` as an object or array (absent means none). `filter` is a
/// lightningd extension.
pub fn check_rpc_request_envelope(msg: &Value) -> Result<(), String> {
    let obj = msg
        .as_object()
        .ok_or_else(|| format!("request is not a JSON object: {msg}"))?;
    let mut problems = Vec::new();
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        problems.push(format!("`jsonrpc` must be \"2.0\", got {:?}", obj.get("jsonrpc")));
    }
    match obj.get("id") {
        Some(id) if id.is_string() || id.is_number() => {}
        Some(id) => problems.push(format!("`id` must be a string or number, got {id}")),
        None => problems.push("missing `id` (lightningd does not accept notifications)".into()),
    }
    if !obj.get("method").is_some_and(Value::is_string) {
        problems.push(format!("`method` must be a string, got {:?}", obj.get("method")));
    }
    if let Some(p) = obj.get("params") {
        if !(p.is_object() || p.is_array()) {
            problems.push(format!("`params` must be an object or an array, got {p}"));
        }
    }
    for k in obj.keys() {
        if !matches!(k.as_str(), "jsonrpc" | "id" | "method" | "params" | "filter") {
            problems.push(format!("unexpected member `{k}`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "invalid JSON-RPC request ({}): {msg}",
            problems.join("; ")
        ))
    }
}

/// Log levels lightningd accepts from a plugin's `log` notification. It
/// also takes `warn` and `error` as synonyms of `unusual` and `broken`
/// (the names the Rust `log` crate uses, which cln-plugin forwards), but
/// refuses `io`, which is reserved for its own I/O tracing.
pub const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "unusual", "broken", "warn", "error"];

#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.level, self.message)
    }
}

/// Params of a `log` notification: `{level, message}`.
pub fn parse_log(params: &Value) -> Result<LogEntry, String> {
    let level = params.get("level").and_then(Value::as_str);
    let message = params.get("message").and_then(Value::as_str);
    match (level, message) {
        (Some(l), Some(m)) if LOG_LEVELS.contains(&l) => Ok(LogEntry {
            level: l.to_string(),
            message: m.to_string(),
        }),
        (Some(l), Some(_)) => Err(format!("log notification with unknown level `{l}`: {params}")),
        _ => Err(format!(
            "log notification needs string `level` and `message`: {params}"
        )),
    }
}

/// Option types the plugin protocol knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionType {
    String,
    Int,
    Bool,
    Flag,
}

#[derive(Clone, Debug)]
pub struct ManifestOption {
    pub name: String,
    pub kind: OptionType,
    pub default: Option<Value>,
    pub description: String,
    pub multi: bool,
    pub dynamic: bool,
}

/// The parts of a plugin manifest the harness acts upon; `raw` keeps the
/// whole answer for assertions.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub raw: Value,
    pub options: Vec<ManifestOption>,
    pub rpcmethods: Vec<String>,
    pub subscriptions: Vec<String>,
    pub hooks: Vec<String>,
    pub notifications: Vec<String>,
    pub dynamic: bool,
    pub nonnumericids: bool,
}

impl Manifest {
    pub fn option(&self, name: &str) -> Option<&ManifestOption> {
        self.options.iter().find(|o| o.name == name)
    }

    pub fn subscribes(&self, topic: &str) -> bool {
        self.subscriptions.iter().any(|s| s == topic || s == "*")
    }

    pub fn has_hook(&self, hook: &str) -> bool {
        self.hooks.iter().any(|h| h == hook)
    }

    pub fn has_rpcmethod(&self, method: &str) -> bool {
        self.rpcmethods.iter().any(|m| m == method)
    }
}

fn string_list(v: Option<&Value>, what: &str, problems: &mut Vec<String>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| match i.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    problems.push(format!("{what}: entries must be strings, got {i}"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(format!("{what} must be an array, got {other}"));
            Vec::new()
        }
    }
}

fn optional_bool(obj: &Map<String, Value>, key: &str, what: &str, problems: &mut Vec<String>) -> bool {
    match obj.get(key) {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            problems.push(format!("{what}: `{key}` must be a boolean, got {other}"));
            false
        }
    }
}

fn is_hex(s: &str) -> bool {
    s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Validates a `getmanifest` result the way lightningd's plugin loader does
/// (lightningd refuses to load a plugin whose manifest breaks these rules).
pub fn check_manifest(result: &Value) -> Result<Manifest, String> {
    let mut problems = Vec::new();
    let Some(obj) = result.as_object() else {
        return Err(format!("getmanifest result must be an object, got {result}"));
    };
    let mut m = Manifest {
        raw: result.clone(),
        ..Manifest::default()
    };

    // options
    match obj.get("options") {
        None => {}
        Some(Value::Array(opts)) => {
            for o in opts {
                match check_option(o) {
                    Ok(opt) => {
                        if m.option(&opt.name).is_some() {
                            problems.push(format!("option `{}` declared twice", opt.name));
                        }
                        m.options.push(opt);
                    }
                    Err(e) => problems.push(e),
                }
            }
        }
        Some(other) => problems.push(format!("`options` must be an array, got {other}")),
    }

    // rpcmethods
    match obj.get("rpcmethods") {
        None => {}
        Some(Value::Array(methods)) => {
            for r in methods {
                let what = format!("rpcmethod {r}");
                let Some(ro) = r.as_object() else {
                    problems.push(format!("{what}: must be an object"));
                    continue;
                };
                match ro.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => {
                        if schemas().has_rpc(name) {
                            problems.push(format!("rpcmethod `{name}` clashes with a lightningd command"));
                        }
                        if m.has_rpcmethod(name) {
                            problems.push(format!("rpcmethod `{name}` declared twice"));
                        }
                        m.rpcmethods.push(name.to_string());
                    }
                    _ => problems.push(format!("{what}: needs a non-empty string `name`")),
                }
                if !ro.get("description").is_some_and(Value::is_string) {
                    problems.push(format!("{what}: needs a string `description`"));
                }
                // lightningd only tolerates a missing usage with deprecated
                // APIs enabled, which the harness never does.
                if !ro.get("usage").is_some_and(Value::is_string) {
                    problems.push(format!("{what}: needs a string `usage`"));
                }
                for k in ro.keys() {
                    if !matches!(
                        k.as_str(),
                        "name" | "description" | "usage" | "long_description" | "deprecated"
                    ) {
                        problems.push(format!("{what}: unknown member `{k}`"));
                    }
                }
            }
        }
        Some(other) => problems.push(format!("`rpcmethods` must be an array, got {other}")),
    }

    // subscriptions
    m.subscriptions = string_list(obj.get("subscriptions"), "`subscriptions`", &mut problems);

    // hooks: objects since v0.10; the bare-string form is gone.
    match obj.get("hooks") {
        None => {}
        Some(Value::Array(hooks)) => {
            for h in hooks {
                let what = format!("hook {h}");
                let Some(ho) = h.as_object() else {
                    problems.push(format!("{what}: must be an object with a `name`"));
                    continue;
                };
                match ho.get("name").and_then(Value::as_str) {
                    Some(name) => {
                        if !schemas().has_hook(name) {
                            problems.push(format!("{what}: `{name}` is not a hook lightningd knows"));
                        }
                        if m.has_hook(name) {
                            problems.push(format!("hook `{name}` registered twice"));
                        }
                        m.hooks.push(name.to_string());
                    }
                    None => problems.push(format!("{what}: needs a string `name`")),
                }
                string_list(ho.get("before"), &format!("{what} `before`"), &mut problems);
                string_list(ho.get("after"), &format!("{what} `after`"), &mut problems);
                if let Some(f) = ho.get("filters") {
                    if !f.is_array() {
                        problems.push(format!("{what}: `filters` must be an array"));
                    }
                }
                for k in ho.keys() {
                    if !matches!(k.as_str(), "name" | "before" | "after" | "filters") {
                        problems.push(format!("{what}: unknown member `{k}`"));
                    }
                }
            }
        }
        Some(other) => problems.push(format!("`hooks` must be an array, got {other}")),
    }

    // notifications the plugin will emit
    match obj.get("notifications") {
        None => {}
        Some(Value::Array(topics)) => {
            for t in topics {
                match t.get("method").and_then(Value::as_str) {
                    Some(method) => {
                        if schemas().has_notification(method) {
                            problems.push(format!(
                                "notification topic `{method}` is native to lightningd and cannot be declared by a plugin"
                            ));
                        }
                        m.notifications.push(method.to_string());
                    }
                    None => problems.push(format!("notification entry {t}: needs a string `method`")),
                }
            }
        }
        Some(other) => problems.push(format!("`notifications` must be an array, got {other}")),
    }

    m.dynamic = optional_bool(obj, "dynamic", "manifest", &mut problems);
    m.nonnumericids = optional_bool(obj, "nonnumericids", "manifest", &mut problems);
    optional_bool(obj, "cancheck", "manifest", &mut problems);

    if let Some(fb) = obj.get("featurebits") {
        match fb.as_object() {
            Some(map) => {
                for (k, v) in map {
                    if !matches!(k.as_str(), "init" | "node" | "channel" | "invoice") {
                        problems.push(format!("featurebits: unknown kind `{k}`"));
                    }
                    if !v.as_str().is_some_and(is_hex) {
                        problems.push(format!("featurebits.{k} must be a hex string, got {v}"));
                    }
                }
            }
            None => problems.push(format!("`featurebits` must be an object, got {fb}")),
        }
    }
    if let Some(cm) = obj.get("custommessages") {
        let ok = cm
            .as_array()
            .is_some_and(|a| a.iter().all(|t| t.as_u64().is_some_and(|n| n <= u16::MAX.into())));
        if !ok {
            problems.push(format!("`custommessages` must be an array of u16, got {cm}"));
        }
    }

    if problems.is_empty() {
        Ok(m)
    } else {
        Err(format!(
            "invalid getmanifest result:\n  - {}\n  manifest: {result}",
            problems.join("\n  - ")
        ))
    }
}

fn check_option(o: &Value) -> Result<ManifestOption, String> {
    let what = format!("option {o}");
    let obj = o
        .as_object()
        .ok_or_else(|| format!("{what}: must be an object"))?;
    let mut problems = Vec::new();
    let name = match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && !n.starts_with('-') => n.to_string(),
        _ => {
            problems.push("needs a non-empty string `name` without leading dashes".to_string());
            String::new()
        }
    };
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some("string") => Some(OptionType::String),
        Some("int") => Some(OptionType::Int),
        Some("bool") => Some(OptionType::Bool),
        Some("flag") => Some(OptionType::Flag),
        other => {
            problems.push(format!(
                "`type` must be one of string/int/bool/flag, got {other:?}"
            ));
            None
        }
    };
    let description = match obj.get("description").and_then(Value::as_str) {
        Some(d) => d.to_string(),
        None => {
            problems.push("needs a string `description`".to_string());
            String::new()
        }
    };
    let multi = optional_bool(obj, "multi", "option", &mut problems);
    let dynamic = optional_bool(obj, "dynamic", "option", &mut problems);
    if let Some(d) = obj.get("deprecated") {
        if !(d.is_boolean() || d.is_string() || d.is_array()) {
            problems.push(format!("`deprecated` has unexpected type: {d}"));
        }
    }
    let default = obj.get("default").cloned();
    if let (Some(kind), Some(def)) = (kind, &default) {
        let ok = match kind {
            OptionType::String => def.is_string(),
            // lightningd parses the default from its text form, so a
            // numeric string is acceptable too.
            OptionType::Int => def.is_i64() || def.as_str().is_some_and(|s| s.parse::<i64>().is_ok()),
            OptionType::Bool => def.is_boolean() || matches!(def.as_str(), Some("true" | "false")),
            OptionType::Flag => def == &json!(false),
        };
        // A multi option may announce its default as a list.
        let ok = ok
            || (multi
                && def.as_array().is_some_and(|a| {
                    a.iter().all(|x| match kind {
                        OptionType::String => x.is_string(),
                        OptionType::Int => x.is_i64(),
                        _ => false,
                    })
                }));
        if !ok {
            problems.push(format!("default {def} does not fit type {kind:?}"));
        }
    }
    if multi && matches!(kind, Some(OptionType::Bool | OptionType::Flag)) {
        problems.push("`multi` is only allowed for string and int options".into());
    }
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "name" | "type" | "default" | "description" | "multi" | "dynamic" | "deprecated"
        ) {
            problems.push(format!("unknown member `{k}`"));
        }
    }
    if problems.is_empty() {
        Ok(ManifestOption {
            name,
            kind: kind.expect("checked above"),
            default,
            description,
            multi,
            dynamic,
        })
    } else {
        Err(format!("{what}: {}", problems.join("; ")))
    }
}

/// Builds the `options` object of `init` as lightningd does: every option
/// the manifest declares, with the value the operator set (coerced to the
/// declared type, as lightningd parses command-line text) or else its
/// default. Options with neither are left out; unknown names are refused,
/// as lightningd refuses to start with an unknown option.
pub fn init_options(manifest: &Manifest, set: &[(String, Value)]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, _) in set {
        if manifest.option(name).is_none() {
            return Err(format!("plugin declares no option `{name}`"));
        }
    }
    for opt in &manifest.options {
        let given: Vec<&Value> = set
            .iter()
            .filter(|(n, _)| *n == opt.name)
            .map(|(_, v)| v)
            .collect();
        if given.is_empty() {
            match (&opt.default, opt.kind) {
                (Some(d), _) => {
                    let v = if opt.multi && !d.is_array() {
                        json!([coerce(opt, d)?])
                    } else if d.is_array() {
                        d.clone()
                    } else {
                        coerce(opt, d)?
                    };
                    out.insert(opt.name.clone(), v);
                }
                (None, OptionType::Flag) => {
                    out.insert(opt.name.clone(), json!(false));
                }
                (None, _) => {}
            }
            continue;
        }
        if opt.multi {
            let mut values = Vec::new();
            for g in given {
                match g {
                    Value::Array(items) => {
                        for i in items {
                            values.push(coerce(opt, i)?);
                        }
                    }
                    single => values.push(coerce(opt, single)?),
                }
            }
            out.insert(opt.name.clone(), Value::Array(values));
        } else {
            if given.len() > 1 {
                return Err(format!(
                    "option `{}` given {} times but is not multi",
                    opt.name,
                    given.len()
                ));
            }
            out.insert(opt.name.clone(), coerce(opt, given[0])?);
        }
    }
    Ok(out)
}

fn coerce(opt: &ManifestOption, v: &Value) -> Result<Value, String> {
    let bad = || format!("option `{}` ({:?}) cannot take value {v}", opt.name, opt.kind);
    match opt.kind {
        OptionType::String => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Number(n) => Ok(json!(n.to_string())),
            Value::Bool(b) => Ok(json!(b.to_string())),
            _ => Err(bad()),
        },
        OptionType::Int => match v {
            Value::Number(n) if n.is_i64() => Ok(v.clone()),
            Value::String(s) => s.trim().parse::<i64>().map(|n| json!(n)).map_err(|_| bad()),
            _ => Err(bad()),
        },
        OptionType::Bool | OptionType::Flag => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if s == "true" => Ok(json!(true)),
            Value::String(s) if s == "false" => Ok(json!(false)),
            _ => Err(bad()),
        },
    }
}

/// Outcome of `init`.
#[derive(Clone, Debug, PartialEq)]
pub enum InitOutcome {
    Active,
    Disabled(String),
}

/// `init` result: `{}` or `{"disable": "<reason>"}`.
pub fn check_init_result(result: &Value) -> Result<InitOutcome, String> {
    let obj = result
        .as_object()
        .ok_or_else(|| format!("init result must be an object, got {result}"))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "disable") {
        return Err(format!("init result has unknown member `{k}`: {result}"));
    }
    match obj.get("disable") {
        None => Ok(InitOutcome::Active),
        Some(Value::String(reason)) if !reason.is_empty() => Ok(InitOutcome::Disabled(reason.clone())),
        Some(other) => Err(format!("init `disable` must be a non-empty string, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Value {
        json!({
            "options": [
                {"name": "ballast-db-path", "type": "string", "default": "ballast",
                 "description": "db", "dynamic": false, "multi": false},
                {"name": "ballast-n", "type": "int", "default": 3, "description": "n"},
                {"name": "ballast-flag", "type": "flag", "description": "f"},
                {"name": "ballast-tag", "type": "string", "description": "t", "multi": true}
            ],
            "rpcmethods": [{"name": "ballast-status", "usage": "", "description": "status"}],
            "subscriptions": ["block_added"],
            "hooks": [{"name": "htlc_accepted", "before": [], "after": []}],
            "notifications": [{"method": "ballast_event"}],
            "dynamic": false,
            "nonnumericids": true,
            "featurebits": {}
        })
    }

    #[test]
    fn good_manifest_parses() {
        let m = check_manifest(&manifest()).unwrap();
        assert_eq!(m.rpcmethods, vec!["ballast-status"]);
        assert!(m.has_hook("htlc_accepted"));
        assert!(m.subscribes("block_added"));
        assert!(!m.subscribes("connect"));
        assert!(m.nonnumericids);
        assert_eq!(m.option("ballast-n").unwrap().kind, OptionType::Int);
    }

    type Mutation = Box<dyn Fn(&mut Value)>;

    #[test]
    fn bad_manifests_are_refused() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("type", Box::new(|m| m["options"][0]["type"] = json!("float"))),
            (
                "default",
                Box::new(|m| m["options"][1]["default"] = json!("three")),
            ),
            (
                "description",
                Box::new(|m| {
                    m["rpcmethods"][0].as_object_mut().unwrap().remove("description");
                }),
            ),
            (
                "clashes",
                Box::new(|m| m["rpcmethods"][0]["name"] = json!("getinfo")),
            ),
            (
                "not a hook",
                Box::new(|m| m["hooks"][0]["name"] = json!("no_such_hook")),
            ),
            (
                "native",
                Box::new(|m| m["notifications"][0]["method"] = json!("block_added")),
            ),
            (
                "must be an object",
                Box::new(|m| m["hooks"][0] = json!("htlc_accepted")),
            ),
            ("boolean", Box::new(|m| m["dynamic"] = json!("yes"))),
            (
                "declared twice",
                Box::new(|m| {
                    let o = m["options"][0].clone();
                    m["options"].as_array_mut().unwrap().push(o);
                }),
            ),
        ];
        for (needle, mutate) in cases {
            let mut m = manifest();
            mutate(&mut m);
            let err = check_manifest(&m).unwrap_err();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }

    #[test]
    fn init_options_fill_defaults_and_coerce() {
        let m = check_manifest(&manifest()).unwrap();
        let opts = init_options(&m, &[]).unwrap();
        assert_eq!(opts["ballast-db-path"], "ballast");
        assert_eq!(opts["ballast-n"], 3);
        assert_eq!(opts["ballast-flag"], false);
        assert!(opts.get("ballast-tag").is_none());

        let opts = init_options(
            &m,
            &[
                ("ballast-n".into(), json!("7")),
                ("ballast-tag".into(), json!("a")),
                ("ballast-tag".into(), json!("b")),
                ("ballast-flag".into(), json!(true)),
            ],
        )
        .unwrap();
        assert_eq!(opts["ballast-n"], 7);
        assert_eq!(opts["ballast-tag"], json!(["a", "b"]));
        assert_eq!(opts["ballast-flag"], true);

        assert!(init_options(&m, &[("nope".into(), json!(1))]).is_err());
        assert!(init_options(&m, &[("ballast-n".into(), json!("x"))]).is_err());
    }

    #[test]
    fn envelopes() {
        let ok = parse_plugin_message(&json!({"jsonrpc": "2.0", "id": "a/b", "result": {}})).unwrap();
        assert!(matches!(ok, FromPlugin::Response { outcome: Ok(_), .. }));
        let err = parse_plugin_message(
            &json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32602, "message": "bad"}}),
        )
        .unwrap();
        match err {
            FromPlugin::Response { outcome: Err(e), id } => {
                assert_eq!(e.code, INVALID_PARAMS);
                assert_eq!(id, json!(3));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            json!({"id": 1, "result": {}}),
            json!({"jsonrpc": "1.0", "id": 1, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}}),
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "x"}}),
            json!({"jsonrpc": "2.0", "id": {}, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": {}}),
            json!({"jsonrpc": "2.0", "method": "log", "params": [1]}),
            json!({"jsonrpc": "2.0"}),
            json!([1]),
        ] {
            assert!(parse_plugin_message(&bad).is_err(), "accepted {bad}");
        }
        assert!(parse_log(&json!({"level": "info", "message": "m"})).is_ok());
        assert!(parse_log(&json!({"level": "warn", "message": "m"})).is_ok());
        assert!(parse_log(&json!({"level": "io", "message": "m"})).is_err());
        assert!(parse_log(&json!({"level": "info"})).is_err());
        assert!(check_rpc_request_envelope(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": {}})
        )
        .is_ok());
        assert!(check_rpc_request_envelope(&json!({"jsonrpc": "2.0", "method": "getinfo"})).is_err());
        assert!(check_rpc_request_envelope(&json!({"id": 1, "method": "getinfo"})).is_err());
    }

    #[test]
    fn init_results() {
        assert_eq!(check_init_result(&json!({})).unwrap(), InitOutcome::Active);
        assert_eq!(
            check_init_result(&json!({"disable": "locked"})).unwrap(),
            InitOutcome::Disabled("locked".into())
        );
        assert!(check_init_result(&json!({"disable": 1})).is_err());
        assert!(check_init_result(&json!({"ok": true})).is_err());
        assert!(check_init_result(&json!(null)).is_err());
    }
}
