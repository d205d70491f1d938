import { invalidArgument, serializeError } from "./errors.js";
import { LocalBackend } from "./local-backend.js";
import { RelayReceiver } from "./stream-relay.js";

// The worker side of the protocol (the page side is worker-client.js). Every request names a
// call id; replies and events carry it back:
//   page -> worker  {type: "call", id, method, args}   {type: "abort", id}
//   worker -> page  {type: "progress", id, event}   {type: "piece", id, piece, entry?}
//                   {type: "result", id, value, stats}   {type: "error", id, error, stats}
//                   {type: "lost", error, stats}  (the GPU device was lost, whether or not a call ran)
// plus the stream relay's messages (stream-relay.js). `port` is the worker's global scope, or a
// MessagePort in tests.
export function serve(port) {
  let backend = null;
  let loading = false;
  const controllers = new Map();
  const relay = new RelayReceiver(port);
  const post = (message) => port.postMessage(message);

  const loaded = () => {
    if (!backend) throw invalidArgument("no model is loaded in this worker");
    return backend;
  };

  const methods = {
    async load(id, [options], signal) {
      if (backend || loading) throw invalidArgument("this worker already holds a model; start one worker per engine");
      loading = true;
      try {
        const model = options.model?.relayStream !== undefined ? relay.stream(options.model.relayStream) : options.model;
        const onProgress = (event) => post({ type: "progress", id, event });
        backend = await LocalBackend.load({ ...options, model }, { onProgress, signal });
        backend.onLost((error) => post({ type: "lost", error: serializeError(error), stats: backend.stats() }));
      } finally {
        loading = false;
      }
    },
    generate: (id, [request, options], signal) =>
      loaded().generate(request, options, (piece, entry) => post({ type: "piece", id, piece, entry }), signal),
    embed: (id, [inputs], signal) => loaded().embed(inputs, signal),
    loadAdapter: (id, [source, load], signal) => {
      const from = source?.relayStream !== undefined ? relay.stream(source.relayStream) : source;
      return loaded().loadAdapter(from, load, { onProgress: (event) => post({ type: "progress", id, event }), signal });
    },
    setAdapters: (id, [list]) => loaded().setAdapters(list),
    removeAdapter: (id, [adapterId]) => loaded().removeAdapter(adapterId),
    resetChat: () => loaded().resetChat(),
    countTokens: (id, [text]) => loaded().countTokens(text),
    reload: (id, args, signal) => loaded().reload({ onProgress: (event) => post({ type: "progress", id, event }), signal }),
    unload: () => loaded().unload(),
  };

  async function call({ id, method, args }) {
    const controller = new AbortController();
    controllers.set(id, controller);
    try {
      if (!Object.hasOwn(methods, method)) throw invalidArgument(`unknown worker method "${method}"`);
      const value = await methods[method](id, args, controller.signal);
      post({ type: "result", id, value, stats: backend?.stats() });
    } catch (error) {
      post({ type: "error", id, error: serializeError(error), stats: backend?.stats() });
    } finally {
      controllers.delete(id);
    }
  }

  port.addEventListener("message", ({ data }) => {
    if (data?.type === "call") call(data);
    else if (data?.type === "abort") controllers.get(data.id)?.abort();
    else if (data?.type === "chunk") relay.receive(data);
  });
  port.start?.();
}
