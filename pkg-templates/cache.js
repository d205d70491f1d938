import { FETCH_FAILED, LlamaWgpuError, abortError } from "./errors.js";
import { absoluteUrl, bodyLength, fetchModel } from "./fetch.js";

// Models are kept with the Cache API rather than IndexedDB or OPFS because cache.put() streams a
// Response body to disk without holding it in memory (a model is often larger than the memory a
// tab may use), it exists in windows and workers alike, and it commits an entry only when the
// whole body was written: an interrupted download makes put() throw and leaves no entry behind,
// so a cached model is always a complete one. Bump the version when the stored form changes.
const CACHE_NAME = "llama-wgpu-models-v1";

// null where the Cache API is missing: insecure pages (plain http other than localhost), some
// private modes, opaque origins (where caches.open throws).
export async function openModelCache() {
  if (!globalThis.caches) return null;
  try {
    return await caches.open(CACHE_NAME);
  } catch {
    return null;
  }
}

export async function listCachedModels() {
  const cache = await openModelCache();
  if (!cache) return [];
  const models = [];
  for (const request of await cache.keys()) {
    const response = await cache.match(request);
    if (!response) continue;
    models.push({ url: request.url, bytes: await storedLength(response) });
  }
  return models;
}

export async function deleteCachedModel(url) {
  const cache = await openModelCache();
  return cache ? cache.delete(absoluteUrl(url)) : false;
}

// The length is stored as Content-Length when the download knew it; otherwise the body's blob
// gives it (a handle to the stored data, not a read of it).
export async function storedLength(response) {
  const length = Number(response.headers.get("content-length"));
  if (Number.isSafeInteger(length) && length > 0) return length;
  return (await response.blob()).size;
}

// Downloads `url` into the cache, reporting (bytes so far, expected total) as they arrive. Returns false when the cache
// refused the entry (quota exceeded, storage error): the caller then streams from the network.
// Throws on network errors, HTTP errors, aborts and truncated downloads.
export async function downloadToCache(cache, url, { signal, onBytes }) {
  const response = await fetchModel(url, signal);
  const expected = bodyLength(response);
  const counted = countingStream(response.body, expected, onBytes);
  const headers = { "content-type": "application/octet-stream" };
  if (expected !== undefined) headers["content-length"] = String(expected);
  try {
    await cache.put(url, new Response(counted.stream, { headers }));
  } catch (cause) {
    if (signal?.aborted) throw abortError(signal.reason);
    if (counted.error) {
      throw new LlamaWgpuError(FETCH_FAILED, `downloading ${url} failed after ${counted.bytes} bytes: ${counted.error?.message ?? counted.error}`, { cause: counted.error });
    }
    return false;
  }
  if (expected !== undefined && counted.bytes !== expected) {
    await cache.delete(url);
    throw new LlamaWgpuError(FETCH_FAILED, `downloading ${url} stopped at ${counted.bytes} of ${expected} bytes`);
  }
  return true;
}

// Counts the body's bytes on their way to the cache, and remembers a network error, which
// cache.put() would otherwise report as an anonymous storage failure.
function countingStream(body, expected, onBytes) {
  const reader = body.getReader();
  const counted = { bytes: 0, error: null, stream: null };
  counted.stream = new ReadableStream({
    async pull(controller) {
      let next;
      try {
        next = await reader.read();
      } catch (error) {
        counted.error = error;
        controller.error(error);
        return;
      }
      if (next.done) {
        controller.close();
        return;
      }
      counted.bytes += next.value.byteLength;
      onBytes(counted.bytes, expected);
      controller.enqueue(next.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return counted;
}
