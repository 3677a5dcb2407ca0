//! Reading fields of the plugin's JSON answers in tests: a missing or mistyped field fails
//! the test with the whole document, so the failure says what was there instead.

use serde_json::Value;

pub fn uint(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("`{pointer}` is not an unsigned integer in {v:#}"))
}

pub fn string<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("`{pointer}` is not a string in {v:#}"))
}

pub fn array<'a>(v: &'a Value, pointer: &str) -> &'a Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("`{pointer}` is not an array in {v:#}"))
}
