// "Search your notes": notes kept in this page, ranked by meaning against a query with an
// embedding model (an embedding GGUF, e.g. Qwen3-Embedding, by URL or local file) in a worker
// engine of its own beside the chat's. Nothing leaves the page. Each note's vector is kept by its
// text, so a search embeds only the notes that changed, and the query.
//
// For tests: the panel's data-state is "idle", "loading", "ready", "searching" or "error".

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const ui = {
  panel: $("notes-panel"),
  url: $("notes-model-url"),
  file: $("notes-model-file"),
  load: $("notes-load"),
  status: $("notes-status"),
  text: $("notes-text"),
  query: $("notes-query"),
  search: $("notes-search"),
  results: $("notes-results"),
};

let engine = null;
const vectors = new Map(); // note text -> unit vector

function setState(state, message) {
  ui.panel.dataset.state = state;
  ui.status.textContent = message;
  ui.search.disabled = state !== "ready";
  ui.load.disabled = state === "loading" || state === "searching";
}

const failed = (error) => setState(engine ? "ready" : "error", `${error?.code ?? "ERROR"}: ${error?.message ?? error}`);

async function load() {
  const model = ui.file.files[0] ?? ui.url.value.trim();
  if (!model) return setState("error", "Give an embedding model's URL or file.");
  setState("loading", "Loading the embedding model…");
  try {
    await engine?.unload();
    engine = null;
    vectors.clear();
    const { createWorkerEngine } = await import("/pkg/index.js");
    const loaded = await createWorkerEngine({ model });
    // A generation model loads but gives no embeddings: find out now, not at the first search.
    const probe = await loaded.embeddings.create({ input: "probe" }).catch(async (error) => {
      await loaded.unload();
      throw error;
    });
    engine = loaded;
    setState("ready", `Ready: ${probe.data[0].embedding.length} dimensions (${loaded.stats().model.name ?? "model"}).`);
  } catch (error) {
    failed(error);
  }
}

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

async function search() {
  const notes = [...new Set(ui.text.value.split("\n").map((n) => n.trim()).filter(Boolean))];
  const query = ui.query.value.trim();
  if (!notes.length || !query) return setState("ready", "Write some notes (one per line) and a query.");
  setState("searching", "Searching…");
  try {
    const missing = notes.filter((n) => !vectors.has(n));
    const { data } = await engine.embeddings.create({ input: [query, ...missing] });
    missing.forEach((note, i) => vectors.set(note, data[i + 1].embedding));
    // The vectors are unit length: the dot product is the cosine similarity.
    const ranked = notes.map((note) => ({ note, score: dot(data[0].embedding, vectors.get(note)) })).sort((a, b) => b.score - a.score);
    ui.results.replaceChildren(
      ...ranked.map(({ note, score }) => {
        const li = document.createElement("li");
        li.dataset.score = String(score);
        li.append(Object.assign(document.createElement("span"), { className: "score", textContent: score.toFixed(3) }), ` ${note}`);
        return li;
      }),
    );
    setState("ready", `${notes.length} notes ranked (${missing.length} embedded now).`);
  } catch (error) {
    failed(error);
  }
}

ui.load.addEventListener("click", load);
ui.search.addEventListener("click", search);
ui.query.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !ui.search.disabled) search();
});
setState("idle", "No embedding model loaded.");
