// The demo's "JSON output" setting as OpenAI's response_format: nothing when off, any JSON
// object when the schema box is empty, else JSON by the schema in the box. A box that does not
// parse as JSON throws (code INVALID_ARGUMENT), and the caller shows the error.
export function responseFormat(on, schemaText) {
  if (!on) return undefined;
  const text = schemaText.trim();
  if (!text) return { type: "json_object" };
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (e) {
    throw Object.assign(new Error(`the JSON schema box is not JSON: ${e.message}`), { code: "INVALID_ARGUMENT" });
  }
  return { type: "json_schema", json_schema: { name: "output", schema, strict: true } };
}
