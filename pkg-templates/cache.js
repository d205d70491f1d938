import { absoluteUrl } from "./fetch.js";

// Models are kept with the Cache API rather than IndexedDB or OPFS because cache.put() streams a
// Response body to disk without holding it in memory (a model is often larger than the memory a
// tab may use), it exists in windows and workers alike, and it commits an entry only when the
// whole body was written: an interrupted download makes put() throw and leaves no entry behind,
// so a cached model is always a complete one (llama-wgpu also withholds the end of the body until
// the engine has accepted every byte and any sha256 matched). Bump the version when the stored form changes.
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

// The header that records the sha256 option a stored model was checked against.
const SHA256_HEADER = "x-llama-wgpu-sha256";

// The stored copy of `url` when it can be used: a copy that is empty, or that was not checked against the asked-for `sha256` (stored
// without the option, or checked against another digest: a new version of the file) is removed,
// and null tells the caller to download again.
export async function cachedModel(store, url, sha256) {
  const response = await store.match(url);
  if (!response) return null;
  // Stored with its length when the download knew it (put() commits only whole bodies);
  // otherwise a second copy's blob gives it, a handle rather than a read of the data.
  const announced = Number(response.headers.get("content-length"));
  const size = announced > 0 ? announced : await storedLength(await store.match(url));
  if (size > 0 && (!sha256 || response.headers.get(SHA256_HEADER) === sha256)) return { response, size };
  response.body?.cancel().catch(() => {});
  await store.delete(url);
  return null;
}

// Writes a download into the cache as it arrives, beside the engine that reads the same chunks.
// cache.put() pulls from a stream this side fills: `write` waits while 4 MiB are queued, so a
// slow disk slows the download instead of filling memory. The entry exists only once `commit`
// closes the stream and put() resolves; `abandon` (a failed or aborted load, a digest that does
// not match) errors the stream, and the Cache API then stores nothing. A put() that fails on its
// own (the storage quota, a storage error) is not the load's failure: writes then do nothing
// and `commit` answers the reason.
export function cacheWriter(store, url, { size, sha256 }) {
  let controller;
  let wake = null;
  let stopped = null; // why writes stopped: a put() failure, the cache cancelling, or abandon()
  let putError = null;
  const stop = (reason) => {
    stopped ??= reason;
    wake?.();
    wake = null;
  };
  const stream = new ReadableStream(
    {
      start(c) {
        controller = c;
      },
      pull() {
        wake?.();
        wake = null;
      },
      cancel: (reason) => stop(reason ?? new Error("the cache stopped reading")),
    },
    { highWaterMark: 4 * 1024 * 1024, size: (chunk) => chunk.byteLength },
  );
  const headers = { "content-type": "application/octet-stream" };
  if (size !== undefined) headers["content-length"] = String(size);
  if (sha256) headers[SHA256_HEADER] = sha256;
  const put = store.put(url, new Response(stream, { headers })).catch((error) => {
    putError = error;
    stop(error);
  });
  return {
    async write(chunk) {
      if (stopped) return;
      controller.enqueue(chunk);
      while (!stopped && controller.desiredSize <= 0) await new Promise((resolve) => (wake = resolve));
    },
    // Resolves to null once stored, or to why the cache refused the entry (put()'s own error
    // rather than the cancellation it caused).
    async commit() {
      if (!stopped) controller.close();
      await put;
      return putError ?? stopped;
    },
    abandon(reason) {
      if (stopped) return;
      stop(reason);
      controller.error(reason);
    },
  };
}
