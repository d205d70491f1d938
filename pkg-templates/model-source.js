import { cacheWriter, cachedModel, openModelCache } from "./cache.js";
import { FETCH_FAILED, LlamaWgpuError, throwIfAborted } from "./errors.js";
import { Download } from "./download.js";
import { absoluteUrl } from "./fetch.js";
import { asBytes, blobChunks, bytesChunks, sourceKind, streamChunks } from "./sources.js";
import { Sha256 } from "./wasm.js";

// Opens a model given in any accepted form as one sequence of byte chunks:
//   { chunks: AsyncIterable<Uint8Array>, size?: number, phase: "load" | "download",
//     cancel: () => void,                    (release the source if loading stops before reading it)
//     discard?: () => Promise<unknown> }   (drop a cached copy found to be invalid)
// A URL found in the cache is read from it ("load"). Otherwise it is downloaded ("download")
// straight into the engine, and into the cache beside it: the engine sees the header first, so
// a model it refuses (an unsupported architecture or type, one too large for the device) stops
// the download there and nothing is stored. With `sha256`, the chunks' digest is checked at the
// end, before the engine is built and before a download is committed to the cache.
// `progress` also receives `{ cacheError }` when the cache refused a downloaded model.
// Pushes every chunk of an opened source into `push`, reporting progress, and insists the source
// delivered the size it announced (`what` names the file in that error).
export async function feedChunks(source, push, { signal, progress, what }) {
  let loaded = 0;
  // Where the time goes: waiting for bytes (the network or the cache) and pushing them into the
  // engine (parsing, and writing the tensors into GPU buffers or wasm memory).
  const timing = { readSeconds: 0, pushSeconds: 0 };
  let mark = performance.now();
  for await (const chunk of source.chunks) {
    const arrived = performance.now();
    timing.readSeconds += (arrived - mark) / 1000;
    throwIfAborted(signal);
    push(chunk);
    loaded += chunk.byteLength;
    progress({ phase: source.phase, loaded, total: source.size });
    mark = performance.now();
    timing.pushSeconds += (mark - arrived) / 1000;
  }
  timing.readSeconds += (performance.now() - mark) / 1000;
  progress({ phase: source.phase, loaded, total: source.size }, true);
  if (source.size !== undefined && loaded !== source.size) {
    throw new LlamaWgpuError("GGUF_INVALID", `${what} ended after ${loaded} of ${source.size} bytes`);
  }
  return timing;
}

export async function openModelSource(model, { cache = true, sha256, signal, progress }) {
  const source = await openKind(model, { cache, sha256, signal, progress });
  if (sha256 && !source.checked) source.chunks = checkedChunks(source.chunks, sha256, "the model");
  return source;
}

async function openKind(model, { cache, sha256, signal, progress }) {
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
      return openUrl(absoluteUrl(model), { cache, sha256, signal, progress });
  }
}

// Only http(s) responses can be stored (cache.put refuses blob:, data: and file: URLs).
async function openUrl(url, { cache, sha256, signal, progress }) {
  const store = cache && /^https?:$/.test(new URL(url).protocol) ? await openModelCache() : null;
  throwIfAborted(signal);
  const cached = store && (await cachedModel(store, url, sha256));
  if (cached) {
    // Stored only after its digest matched: no need to hash it again.
    const discard = () => store.delete(url);
    const source = streamSource(cached.response.body, cached.size, "load");
    return { ...source, chunks: fromCache(source.chunks, url, discard), checked: true, discard };
  }
  const download = await Download.start(url, signal);
  let chunks = download.chunks();
  if (sha256) chunks = checkedChunks(chunks, sha256, url);
  const writer = store && cacheWriter(store, url, { size: download.size, sha256 });
  return {
    chunks: downloaded(chunks, download, writer, progress),
    size: download.size,
    phase: "download",
    checked: true,
    cancel() {
      // Loading stopped before it read anything: close the connection, store nothing.
      writer?.abandon(new Error("the load stopped"));
      download.cancel();
    },
  };
}

// The download's chunks on their way to the engine, copied into the cache as they pass. Only a
// download that ended whole (and matched its digest) is committed; any other end — a network
// failure past the retries, the engine refusing the file, an abort — abandons the entry.
async function* downloaded(chunks, download, writer, progress) {
  let whole = false;
  try {
    for await (const chunk of chunks) {
      await writer?.write(chunk);
      yield* bytesChunks(chunk);
    }
    if (download.received === 0) throw new LlamaWgpuError(FETCH_FAILED, "the server sent an empty body");
    whole = true;
  } finally {
    if (!whole) writer?.abandon(new Error("the download did not complete"));
  }
  const refused = await writer?.commit();
  if (refused) {
    const reason = `the model was not cached (${refused.name ?? "Error"}: ${refused.message ?? refused}); the next load downloads it again`;
    progress({ phase: "download", loaded: download.received, total: download.size, cacheError: reason }, true);
  }
}

// A stored copy that cannot be read back (storage evicted or damaged under us) is removed, so
// the next load downloads the model again instead of failing the same way.
async function* fromCache(chunks, url, discard) {
  try {
    yield* chunks;
  } catch (error) {
    if (error instanceof LlamaWgpuError) throw error;
    await discard().catch(() => {});
    throw new LlamaWgpuError(FETCH_FAILED, `reading the cached copy of ${url} failed (${error?.message ?? error}); it was removed, so the next load downloads the model again`, { cause: error });
  }
}

// Passes chunks through while taking their SHA-256; at the end, a digest other than `expected`
// is FETCH_FAILED: the bytes are not the file the app asked for.
async function* checkedChunks(chunks, expected, what) {
  const hasher = new Sha256();
  let read = false;
  try {
    for await (const chunk of chunks) {
      hasher.update(chunk);
      yield chunk;
    }
    read = true;
  } finally {
    if (!read) hasher.free();
  }
  const digest = hasher.hex();
  if (digest !== expected) {
    throw new LlamaWgpuError(FETCH_FAILED, `${what} has sha256 ${digest}, not the expected ${expected}`);
  }
}

// Once reading has begun, stopping the iteration cancels the stream (see streamChunks); before
// that, cancel() does, so a failed start does not leave a download running.
function streamSource(stream, size, phase) {
  const cancel = () => {
    if (!stream.locked) stream.cancel().catch(() => {});
  };
  return { chunks: streamChunks(stream), size, phase, cancel };
}
