//! Crossing the JS boundary: errors with codes, JSON-shaped options and results.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::JsValue;

use crate::error::Error;

/// A JS `Error` carrying the crate error's message and stable `code`.
pub fn js_error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("LlamaWgpuError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

/// Read a plain JS object (or `undefined`, meaning all defaults) as `T`.
pub fn from_js<T: DeserializeOwned + Default>(value: &JsValue, what: &str) -> Result<T, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let text = js_sys::JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| Error::InvalidArgument(format!("{what} cannot be read as JSON")))?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("{what}: {e}")))
}

/// A serialisable value as a plain JS object.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::InvalidArgument(format!("serialising a result: {e}")))?;
    js_sys::JSON::parse(&text).map_err(|_| Error::InvalidArgument("parsing a result".into()))
}
