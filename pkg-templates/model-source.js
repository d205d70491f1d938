import { downloadToCache, openModelCache } from "./cache.js";
import { throwIfAborted } from "./errors.js";
import { absoluteUrl, bodyLength, fetchModel } from "./fetch.js";
import { asBytes, blobChunks, bytesChunks, sourceKind, streamChunks } from "./sources.js";

// Opens a model given in any accepted form as one sequence of byte chunks:
//   { chunks: AsyncIterable<Uint8Array>, size?: number, phase: "load" | "download",
//     cancel: () => void,                    (release the source if loading stops before reading it)
//     discard?: () => Promise<unknown> }   (drop a cached copy found to be invalid)
// A URL is first downloaded into the cache (reporting "download" progress), then read back from
// it as "load"; without a cache its network body is the source, and its progress is "download".
export async function openModelSource(model, { cache = true, signal, progress }) {
  switch (sourceKind(model)) {
    case "blob":
      return { chunks: blobChunks(model), size: model.size, phase: "load", cancel() {} };
    case "bytes": {
      const bytes = asBytes(model);
      return { chunks: bytesChunks(bytes), size: bytes.byteLength, phase: "load", cancel() {} };
    }
    case "stream":
      return streamSource(model, undefined, "load");
    case "url":
      return openUrl(absoluteUrl(model), { cache, signal, progress });
  }
}

// Only http(s) responses can be stored (cache.put refuses blob:, data: and file: URLs).
async function openUrl(url, { cache, signal, progress }) {
  const store = cache && /^https?:$/.test(new URL(url).protocol) ? await openModelCache() : null;
  if (store) {
    throwIfAborted(signal);
    let cached = await store.match(url);
    if (!cached) {
      const onBytes = (loaded, total) => progress({ phase: "download", loaded, total });
      if (await downloadToCache(store, url, { signal, onBytes })) cached = await store.match(url);
    }
    if (cached) {
      return { ...streamSource(cached.body, bodyLength(cached), "load"), discard: () => store.delete(url) };
    }
  }
  // No cache, or it refused the entry (quota): the network body goes straight into the loader.
  const response = await fetchModel(url, signal);
  return streamSource(response.body, bodyLength(response), "download");
}

// Once reading has begun, stopping the iteration cancels the stream (see streamChunks); before
// that, cancel() does, so a failed start does not leave a download running.
function streamSource(stream, size, phase) {
  const cancel = () => {
    if (!stream.locked) stream.cancel().catch(() => {});
  };
  return { chunks: streamChunks(stream), size, phase, cancel };
}
