#!/usr/bin/env node
// A dependency-free static server for the demo, the built package and a model file.
//
//   node www/serve.mjs [--host 127.0.0.1] [--port 8080 (0 = any free port)] [--model PATH]
//                      [--pkg DIR] [--root DIR] [--vendor DIR] [--serve URLPATH=FILE_OR_DIR ...]
//                      [--verbose]
//
// Routes:
//   /                    the demo (--root, default <repo>/www)
//   /pkg/...             the built package (--pkg, default <repo>/pkg)
//   /vendor/marked.js    the demo's markdown libraries, ES modules from the npm packages build.sh
//   /vendor/purify.js    installs (--vendor: their node_modules, default $LLAMA_WGPU_CACHE/npm-tools/node_modules)
//   /models/default.gguf the model (--model, default $LLAMA_WGPU_CACHE or ~/.cache/llama-wgpu
//                        + /models/SmolLM2-135M-Instruct.Q4_1.gguf), Range requests supported
//   URLPATH              each --serve pair: a file at exactly URLPATH, or a folder mounted there
//   /test/corrupt.gguf   GGUF magic, then an absurd tensor count (2^40) and nonsense
//   /test/not-gguf.gguf  random bytes
//   /test/truncated.gguf announces the default model's full length, sends about half, then
//                        destroys the socket (a download interrupted half-way); no Range support
//   /test/flaky.gguf     the default model, Range supported, each response cut off after a third
//                        of the file (a download completes only by resuming)
//   /test/long-length.gguf  the default model under a Content-Length 1000 bytes too long
//   /test/unsupported.gguf  the default model with its architecture renamed "mamba"
//   /test/empty.gguf     200 with an empty body
//   /test/missing.gguf   404
//   /__requests          JSON {path: count} of requests seen since start or the last
//                        POST /__requests/reset
//   /__sent              JSON {path: bytes} of the model the /test/ fault routes sent (same reset)
//
// Every response carries COOP same-origin, COEP require-corp and CORP same-origin, so pages are
// cross-origin isolated (SharedArrayBuffer, threads), except a page asked for with `?coi=0`. On start it prints exactly one line,
// `serving http://HOST:PORT/`, to stdout.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { forEachOption } from "./cli-options.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..");

function usage(message) {
  if (message) process.stderr.write(`serve.mjs: ${message}\n`);
  process.stderr.write(
    "usage: node www/serve.mjs [--host H] [--port P] [--model PATH] [--pkg DIR] [--root DIR] [--vendor DIR]\n" +
      "                          [--serve URLPATH=FILE_OR_DIR]... [--verbose]\n",
  );
  process.exit(message ? 2 : 0);
}

function parseArgs(argv) {
  const cache = process.env.LLAMA_WGPU_CACHE || path.join(os.homedir(), ".cache", "llama-wgpu");
  const options = {
    host: "127.0.0.1",
    port: 8080,
    model: path.join(cache, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    pkg: path.join(repo, "pkg"),
    root: path.join(repo, "www"),
    vendor: path.join(cache, "npm-tools", "node_modules"),
    serve: [],
    verbose: false,
  };
  forEachOption(argv, usage, (arg, take) => {
    switch (arg) {
      case "--host": options.host = take(); break;
      case "--port": {
        const port = Number(take());
        if (!Number.isInteger(port) || port < 0 || port > 65535) usage("bad --port");
        options.port = port;
        break;
      }
      case "--model": options.model = path.resolve(take()); break;
      case "--pkg": options.pkg = path.resolve(take()); break;
      case "--root": options.root = path.resolve(take()); break;
      case "--vendor": options.vendor = path.resolve(take()); break;
      case "--serve": {
        const pair = take();
        const at = pair.indexOf("=");
        if (at <= 0) usage(`--serve wants URLPATH=FILE, got ${pair}`);
        let urlPath = pair.slice(0, at);
        if (!urlPath.startsWith("/")) urlPath = "/" + urlPath;
        options.serve.push({ urlPath, file: path.resolve(pair.slice(at + 1)) });
        break;
      }
      case "--verbose": options.verbose = true; break;
      case "--help": case "-h": usage(); break;
      default: usage(`unknown argument ${arg}`);
    }
    });
  return options;
}

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".cjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".gguf": "application/octet-stream",
  ".bin": "application/octet-stream",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

function mimeOf(file) {
  return MIME[path.extname(file).toLowerCase()] || "application/octet-stream";
}

function baseHeaders(extra = {}) {
  return {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    // Nothing is kept in the browser's HTTP cache: a reload that does not fetch the model proves
    // the package's own cache (Cache API) served it, and edits to the demo show at once.
    "Cache-Control": "no-store",
    ...extra,
  };
}

// `?coi=0` on a page's URL: the page is served without COOP/COEP, so it is not cross-origin
// isolated (no shared memory, so the package loads its one-thread build). For tests.
function withoutIsolation(res) {
  const writeHead = res.writeHead.bind(res);
  res.writeHead = (status, headers = {}) => {
    const { "Cross-Origin-Opener-Policy": _coop, "Cross-Origin-Embedder-Policy": _coep, ...rest } = headers;
    return writeHead(status, rest);
  };
}

function sendText(req, res, status, text, type = "text/plain; charset=utf-8", extra = {}) {
  const body = Buffer.from(text);
  res.writeHead(status, baseHeaders({ "Content-Type": type, "Content-Length": body.length, ...extra }));
  res.end(req.method === "HEAD" ? undefined : body);
}

function sendBytes(req, res, bytes, type = "application/octet-stream") {
  res.writeHead(200, baseHeaders({ "Content-Type": type, "Content-Length": bytes.length, "Accept-Ranges": "none" }));
  res.end(req.method === "HEAD" ? undefined : bytes);
}

// Parses a single-range `Range` header against a size. Returns null when absent or not a
// single byte range (then the whole file is sent), "unsatisfiable", or {start, end} inclusive.
function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null; // multi-range or another unit: ignore, send the whole file
  let start;
  let end;
  if (m[1] === "" && m[2] === "") return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return "unsatisfiable";
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (start >= size || end < start) return "unsatisfiable";
  }
  return { start, end };
}

function streamFile(req, res, file, stat, type = mimeOf(file)) {
  const size = stat.size;
  const headers = {
    "Content-Type": type,
    "Accept-Ranges": "bytes",
    "Last-Modified": stat.mtime.toUTCString(),
  };
  const range = parseRange(req.headers.range, size);
  if (range === "unsatisfiable") {
    res.writeHead(416, baseHeaders({ ...headers, "Content-Range": `bytes */${size}`, "Content-Length": 0 }));
    res.end();
    return;
  }
  let status = 200;
  let start = 0;
  let end = size - 1;
  if (range) {
    status = 206;
    ({ start, end } = range);
    headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  }
  headers["Content-Length"] = size === 0 ? 0 : end - start + 1;
  res.writeHead(status, baseHeaders(headers));
  if (req.method === "HEAD" || size === 0) {
    res.end();
    return;
  }
  const stream = fs.createReadStream(file, { start, end, highWaterMark: 1 << 20 });
  stream.on("error", () => res.destroy());
  res.on("close", () => stream.destroy());
  stream.pipe(res);
}

// The default model served with a fault, for the download tests. `fault`:
//   cutAfter  bytes one response sends before the socket is destroyed (the client sees the
//             connection drop mid-body); default: none, the response ends normally
//   ranges    whether Range requests are honoured (else every response is the whole file, 200)
//   announce  the Content-Length of a 200 response (default: the true size)
//   patch     (chunk, position) => void, edits the bytes on their way out
// Bytes sent are added to `sent` under the request's path.
function streamFaulty(req, res, file, stat, fault, sent, pathname) {
  const size = stat.size;
  const headers = { "Content-Type": "application/octet-stream", "Accept-Ranges": fault.ranges ? "bytes" : "none", ETag: `"${size}-${stat.mtimeMs}"` };
  const range = fault.ranges ? parseRange(req.headers.range, size) : null;
  if (range === "unsatisfiable") {
    res.writeHead(416, baseHeaders({ ...headers, "Content-Range": `bytes */${size}`, "Content-Length": 0 }));
    res.end();
    return;
  }
  const { start, end } = range ?? { start: 0, end: size - 1 };
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  headers["Content-Length"] = range ? end - start + 1 : fault.announce ?? size;
  res.writeHead(range ? 206 : 200, baseHeaders(headers));
  if (req.method === "HEAD") {
    res.end();
    return;
  }
  const last = Math.min(end, fault.cutAfter === undefined ? end : start + fault.cutAfter - 1);
  const stream = fs.createReadStream(file, { start, end: last, highWaterMark: 1 << 20 });
  let position = start;
  res.on("close", () => stream.destroy());
  stream.on("data", (chunk) => {
    fault.patch?.(chunk, position);
    position += chunk.length;
    sent.set(pathname, (sent.get(pathname) || 0) + chunk.length);
    if (!res.write(chunk)) {
      stream.pause();
      res.once("drain", () => stream.resume());
    }
  });
  stream.on("end", () => {
    if (position > end && fault.announce === undefined) return res.end();
    // An empty write's callback runs once everything before it has been flushed.
    res.write(Buffer.alloc(0), () => setTimeout(() => res.socket?.destroy(), 50));
  });
  stream.on("error", () => res.socket?.destroy());
}

// Renames the architecture in a GGUF's metadata ("general.architecture" = "llama" becomes
// "mamba", which llama-wgpu does not run), found in `head`, the file's first bytes. Returns the
// patch for streamFaulty, or null when the file is not a llama GGUF.
function renamedArchitecture(head) {
  const key = Buffer.from("general.architecture");
  const at = head.indexOf(key);
  if (at < 0 || head.readUInt32LE(at + key.length) !== 8 || head.readBigUInt64LE(at + key.length + 4) !== 5n) return null;
  const value = at + key.length + 12;
  if (head.toString("latin1", value, value + 5) !== "llama") return null;
  return (chunk, position) => {
    for (let i = 0; i < 5; i++) {
      const j = value + i - position;
      if (j >= 0 && j < chunk.length) chunk[j] = "mamba".charCodeAt(i);
    }
  };
}

// A few KB that start like a GGUF v3 file and then make no sense: tensor count 2^40.
function corruptGguf() {
  const bytes = Buffer.alloc(4096);
  bytes.write("GGUF", 0, "latin1");
  bytes.writeUInt32LE(3, 4); // version
  bytes.writeBigUInt64LE(1n << 40n, 8); // tensor count
  bytes.writeBigUInt64LE(3n, 16); // metadata kv count
  let x = 0x9e3779b9;
  for (let i = 24; i < bytes.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

// Random (but fixed) bytes that do not start with the GGUF magic.
function notGguf() {
  const bytes = Buffer.alloc(8192);
  let x = 0x12345678;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    bytes[i] = (x >>> 8) & 0xff;
  }
  bytes.write("NOPE", 0, "latin1");
  return bytes;
}

function readHead(file) {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(1 << 16);
    return head.subarray(0, fs.readSync(fd, head, 0, head.length, 0));
  } finally {
    fs.closeSync(fd);
  }
}

// Resolves a URL path below a folder, refusing anything that would leave it.
function resolveUnder(dir, rest) {
  if (rest.includes("\0")) return null;
  const parts = rest.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.some((p) => p === ".." || p.includes("\\"))) return null;
  const file = path.resolve(dir, ...parts);
  if (file !== dir && !file.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep)) return null;
  return file;
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const counts = new Map();
  const sent = new Map(); // bytes of the model the fault routes sent, by path
  let patch;
  const faults = {
    "/test/truncated.gguf": (size) => ({ ranges: false, cutAfter: Math.max(1, Math.floor(size / 2)) }),
    "/test/flaky.gguf": (size) => ({ ranges: true, cutAfter: Math.ceil(size / 3) }),
    "/test/long-length.gguf": (size) => ({ ranges: true, announce: size + 1000 }),
    "/test/unsupported.gguf": () => {
      patch ??= renamedArchitecture(readHead(options.model));
      return patch && { ranges: true, patch };
    },
  };
  const corrupt = corruptGguf();
  const random = notGguf();

  // Mounts, longest URL prefix first. A file is served at exactly its URL path; a folder serves
  // everything below its URL path.
  const mounts = [
    { urlPath: "/models/default.gguf", file: options.model },
    ...options.serve,
    { urlPath: "/pkg/", file: options.pkg, dir: true },
    { urlPath: "/vendor/marked.js", file: path.join(options.vendor, "marked", "lib", "marked.esm.js") },
    { urlPath: "/vendor/purify.js", file: path.join(options.vendor, "dompurify", "dist", "purify.es.mjs") },
  ];
  for (const m of options.serve) {
    try {
      m.dir = fs.statSync(m.file).isDirectory();
    } catch {
      process.stderr.write(`serve.mjs: warning: ${m.file} (for ${m.urlPath}) does not exist\n`);
      m.dir = m.urlPath.endsWith("/");
    }
  }
  for (const m of mounts) {
    if (m.dir && !m.urlPath.endsWith("/")) m.urlPath += "/";
  }
  mounts.sort((a, b) => b.urlPath.length - a.urlPath.length);

  function serveFromDisk(req, res, file, { index = true, type } = {}) {
    fs.stat(file, (err, stat) => {
      if (!err && stat.isDirectory()) {
        if (!index) return sendText(req, res, 404, "not found\n");
        const withIndex = path.join(file, "index.html");
        return fs.stat(withIndex, (err2, stat2) => {
          if (err2 || !stat2.isFile()) return sendText(req, res, 404, "not found\n");
          streamFile(req, res, withIndex, stat2);
        });
      }
      if (err || !stat.isFile()) return sendText(req, res, 404, "not found\n");
      streamFile(req, res, file, stat, type);
    });
  }

  const server = http.createServer((req, res) => {
    let pathname;
    try {
      const url = new URL(req.url, "http://localhost");
      pathname = decodeURIComponent(url.pathname);
      if (url.searchParams.get("coi") === "0") withoutIsolation(res);
    } catch {
      return sendText(req, res, 400, "bad request\n");
    }
    if (options.verbose) {
      const started = Date.now();
      res.on("close", () => {
        process.stderr.write(`${req.method} ${req.url} ${res.statusCode} ${req.headers.range || ""} ${Date.now() - started} ms\n`);
      });
    }

    if (pathname === "/__requests/reset") {
      if (req.method !== "POST") return sendText(req, res, 405, "POST only\n", undefined, { Allow: "POST" });
      counts.clear();
      sent.clear();
      return sendText(req, res, 200, "{}\n", "application/json; charset=utf-8");
    }
    if (pathname === "/__requests") {
      return sendText(req, res, 200, JSON.stringify(Object.fromEntries(counts)) + "\n", "application/json; charset=utf-8");
    }
    if (pathname === "/__sent") {
      return sendText(req, res, 200, JSON.stringify(Object.fromEntries(sent)) + "\n", "application/json; charset=utf-8");
    }
    counts.set(pathname, (counts.get(pathname) || 0) + 1);

    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendText(req, res, 405, "GET or HEAD only\n", undefined, { Allow: "GET, HEAD" });
    }

    switch (pathname) {
      case "/test/corrupt.gguf": return sendBytes(req, res, corrupt);
      case "/test/not-gguf.gguf": return sendBytes(req, res, random);
      case "/test/missing.gguf": return sendText(req, res, 404, "not found\n");
      case "/test/empty.gguf": return sendBytes(req, res, Buffer.alloc(0));
    }
    const fault = faults[pathname];
    if (fault) {
      return fs.stat(options.model, (err, stat) => {
        if (err || !stat.isFile()) return sendText(req, res, 404, "the default model is missing\n");
        const faulty = fault(stat.size);
        if (!faulty) return sendText(req, res, 404, "the default model is not a llama GGUF\n");
        streamFaulty(req, res, options.model, stat, faulty, sent, pathname);
      });
    }

    for (const m of mounts) {
      if (m.dir) {
        if (pathname === m.urlPath.slice(0, -1)) {
          // "/pkg" -> "/pkg/", so relative URLs inside resolve.
          return sendText(req, res, 301, "moved\n", undefined, { Location: m.urlPath });
        }
        if (!pathname.startsWith(m.urlPath)) continue;
        const file = resolveUnder(m.file, pathname.slice(m.urlPath.length));
        if (!file) return sendText(req, res, 403, "forbidden\n");
        return serveFromDisk(req, res, file);
      }
      // A file mounted at a URL gets the MIME type of the URL's extension.
      if (pathname === m.urlPath) return serveFromDisk(req, res, m.file, { index: false, type: mimeOf(pathname) });
    }

    const file = resolveUnder(options.root, pathname);
    if (!file) return sendText(req, res, 403, "forbidden\n");
    serveFromDisk(req, res, file);
  });

  server.on("clientError", (err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    else socket.destroy();
  });
  server.on("error", (err) => {
    process.stderr.write(`serve.mjs: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(options.port, options.host, () => {
    const { port } = server.address();
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    process.stdout.write(`serving http://${host}:${port}/\n`);
  });

  const stop = () => {
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main();
