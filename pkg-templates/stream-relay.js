import { deserializeError, serializeError } from "./errors.js";

// Carries a ReadableStream from the page to the worker where streams are not transferable
// (Safari). The worker asks for one chunk at a time, so the page reads no faster than the model
// loads and at most one chunk is in flight: memory stays bounded as with a transferred stream.
//   worker -> page  {type: "pull", stream}      {type: "cancel", stream}
//   page -> worker  {type: "chunk", stream, done, value?, error?}

export class RelaySender {
  #port;
  #readers = new Map();
  #nextId = 1;

  constructor(port) {
    this.#port = port;
  }

  add(stream) {
    const id = this.#nextId++;
    this.#readers.set(id, stream.getReader());
    return id;
  }

  // Returns true when the message was for the relay.
  async receive(message) {
    const reader = this.#readers.get(message.stream);
    if (message.type === "cancel") {
      this.#readers.delete(message.stream);
      await reader?.cancel().catch(() => {});
      return true;
    }
    if (message.type !== "pull") return false;
    if (!reader) return true;
    try {
      const { done, value } = await reader.read();
      if (done) this.#readers.delete(message.stream);
      this.#port.postMessage({ type: "chunk", stream: message.stream, done, value: done ? undefined : ownedCopy(value) });
    } catch (error) {
      this.#readers.delete(message.stream);
      this.#port.postMessage({ type: "chunk", stream: message.stream, done: true, error: serializeError(error) });
    }
    return true;
  }
}

// Structured clone copies a view's whole underlying buffer; copy just the view when it is part.
function ownedCopy(value) {
  if (!ArrayBuffer.isView(value)) return value;
  const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

export class RelayReceiver {
  #port;
  #waiting = new Map();

  constructor(port) {
    this.#port = port;
  }

  stream(id) {
    const port = this.#port;
    return new ReadableStream(
      {
        pull: (controller) =>
          new Promise((resolve) => {
            this.#waiting.set(id, { controller, resolve });
            port.postMessage({ type: "pull", stream: id });
          }),
        cancel: () => port.postMessage({ type: "cancel", stream: id }),
      },
      { highWaterMark: 0 },
    );
  }

  receive({ stream, done, value, error }) {
    const waiting = this.#waiting.get(stream);
    if (!waiting) return;
    this.#waiting.delete(stream);
    if (error) waiting.controller.error(deserializeError(error));
    else if (done) waiting.controller.close();
    else waiting.controller.enqueue(value);
    waiting.resolve();
  }
}
