import { invalidArgument } from "./errors.js";

// The loader copies each chunk into wasm memory before sending it to the GPU, so the chunk size
// bounds the page's extra memory whatever the model's size.
export const CHUNK_BYTES = 8 * 1024 * 1024;

// What a `model` option is, decided once so the page and the worker agree.
export function sourceKind(model) {
  if (typeof model === "string" || model instanceof URL) return "url";
  if (typeof Blob !== "undefined" && model instanceof Blob) return "blob";
  if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) return "bytes";
  if (typeof model?.getReader === "function") return "stream";
  throw invalidArgument("model must be a URL (string or URL), a File or Blob, an ArrayBuffer or Uint8Array, or a ReadableStream<Uint8Array>");
}

export function asBytes(model) {
  if (model instanceof ArrayBuffer) return new Uint8Array(model);
  return new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
}

export function* bytesChunks(bytes) {
  for (let offset = 0; offset < bytes.byteLength; offset += CHUNK_BYTES) {
    yield bytes.subarray(offset, offset + CHUNK_BYTES);
  }
}

// Slices are read one at a time: a File is never read whole into memory.
export async function* blobChunks(blob) {
  for (let offset = 0; offset < blob.size; offset += CHUNK_BYTES) {
    yield new Uint8Array(await blob.slice(offset, offset + CHUNK_BYTES).arrayBuffer());
  }
}

// Stopping early (an abort, a bad file) cancels the stream, which for a fetch body closes the
// connection instead of downloading the rest.
export async function* streamChunks(stream) {
  const reader = stream.getReader();
  let done = false;
  try {
    for (;;) {
      const next = await reader.read();
      if (next.done) {
        done = true;
        return;
      }
      const chunk = next.value;
      if (!(chunk instanceof ArrayBuffer || ArrayBuffer.isView(chunk))) {
        throw invalidArgument("a model stream must yield Uint8Array chunks");
      }
      yield* bytesChunks(asBytes(chunk));
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
