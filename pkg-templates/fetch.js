import { FETCH_FAILED, LlamaWgpuError, abortError } from "./errors.js";

export function absoluteUrl(url) {
  return new URL(url, globalThis.location?.href).href;
}

// fetch() rejects only on network errors; an HTTP error status is a failure here too, because its
// body is an error page, not a model (the error's `status` keeps it). `headers`: e.g. a Range.
export async function fetchModel(url, signal, headers) {
  let response;
  try {
    response = await fetch(url, headers ? { signal, headers } : { signal });
  } catch (cause) {
    if (signal?.aborted) throw abortError(signal.reason);
    throw new LlamaWgpuError(FETCH_FAILED, `fetching ${url} failed: ${cause?.message ?? cause} (network error, or the server does not allow cross-origin requests)`, { cause });
  }
  if (!response.ok) {
    response.body?.cancel().catch(() => {});
    const error = new LlamaWgpuError(FETCH_FAILED, `fetching ${url} failed: HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}`);
    error.status = response.status;
    throw error;
  }
  return response;
}

// The byte count the body will have, when the headers say so. With a content encoding the header
// counts compressed bytes while the body yields decompressed ones, so it cannot be trusted then.
export function bodyLength(response) {
  const encoding = response.headers.get("content-encoding");
  if (encoding && encoding !== "identity") return undefined;
  const length = Number(response.headers.get("content-length"));
  return Number.isSafeInteger(length) && length > 0 ? length : undefined;
}
