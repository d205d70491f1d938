//! Crossing the JS boundary: errors with codes, options and results as plain JS objects through
//! `serde-wasm-bindgen` (no JSON text in between).
//!
//! Options are read strictly, the same way everywhere: a key the options struct does not know
//! is `INVALID_ARGUMENT` naming it and the known ones (as the facade refuses unknown
//! `createEngine()` / `generate()` keys), and a value of the wrong type is `INVALID_ARGUMENT`
//! naming its key. Keys whose value is `undefined` count as absent.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::Error;

/// A JS `Error` carrying the crate error's message and stable `code`.
pub fn js_error(e: &Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("LlamaWgpuError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

/// Read a value (an array, say) as `T`; `undefined` and `null` read as `T::default()`.
pub fn from_js<T: DeserializeOwned + Default>(value: &JsValue, what: &str) -> Result<T, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(value.clone())
        .map_err(|e| Error::InvalidArgument(format!("{what}: {}", message(e))))
}

/// serde's message, without the "Error: " of the JS error serde-wasm-bindgen wraps it in.
fn message(e: serde_wasm_bindgen::Error) -> String {
    let value = JsValue::from(e);
    match value.dyn_ref::<js_sys::Error>() {
        Some(error) => error.message().into(),
        None => format!("{value:?}"),
    }
}

/// Read a plain JS object of options as `T`, refusing keys `T` does not have. The known keys
/// are those `T::default()` serialises (every field, flattened ones included), so the list
/// follows the struct.
pub fn options_from_js<T>(value: &JsValue, what: &str) -> Result<T, Error>
where
    T: DeserializeOwned + Serialize + Default,
{
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let object = value
        .dyn_ref::<js_sys::Object>()
        .filter(|_| !js_sys::Array::is_array(value) && !value.is_function())
        .ok_or_else(|| Error::InvalidArgument(format!("{what} must be an object")))?;
    let known = known_keys::<T>();
    // A copy without the undefined entries (JSON text used to drop them; serde would read
    // `undefined` as a unit value, which no option field takes).
    let defined = js_sys::Object::new();
    for entry in js_sys::Object::entries(object).iter() {
        let entry: js_sys::Array = entry.unchecked_into();
        let (key, v) = (entry.get(0), entry.get(1));
        let name = key.as_string().unwrap_or_default();
        if !known.contains(&name) {
            return Err(Error::InvalidArgument(format!(
                "unknown {what} \"{name}\" (options: {})",
                known.join(", ")
            )));
        }
        if !v.is_undefined() {
            // Setting a property on a fresh plain object cannot fail.
            let _ = js_sys::Reflect::set(&defined, &key, &v);
        }
    }
    let defined: JsValue = defined.into();
    serde_wasm_bindgen::from_value(defined.clone()).map_err(|e| {
        let e = message(e);
        // serde's message names the type, not always the key (flattened fields never): find the
        // key by reading each entry alone.
        let key = js_sys::Object::keys(defined.unchecked_ref::<js_sys::Object>())
            .iter()
            .filter_map(|key| {
                let one = js_sys::Object::new();
                let _ =
                    js_sys::Reflect::set(&one, &key, &js_sys::Reflect::get(&defined, &key).ok()?);
                serde_wasm_bindgen::from_value::<T>(one.into()).err()?;
                key.as_string()
            })
            .next();
        match key {
            Some(key) => Error::InvalidArgument(format!("{what} \"{key}\": {e}")),
            None => Error::InvalidArgument(format!("{what}: {e}")),
        }
    })
}

/// The keys of `T` as JS passes them: those of `T::default()` serialised.
fn known_keys<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A serialisable value as plain JS data: objects (not `Map`s) for structs and maps, numbers
/// for 64-bit integers, `null` for `None`, as JSON would give them.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, Error> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| Error::InvalidArgument(format!("serialising a result: {e}")))
}
