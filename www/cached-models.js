// The demo's list of the models in the package's cache (listCachedModels), each with a Load and
// a Delete button.

// Fills `list` with one row per cached model (and shows `empty` when there are none).
// `onLoad(url)` loads a model; deleting one calls `onChange()` after it, and errors go to
// `onError`.
export async function renderCachedModels(pkg, { list, empty, onLoad, onChange, onError }) {
  let items = [];
  try {
    items = (await pkg.listCachedModels()) || [];
  } catch (err) {
    console.warn("[demo] listCachedModels:", err);
  }
  const rows = items.map(({ url, bytes }) => {
    const li = document.createElement("li");
    li.dataset.testid = "cached-item";
    li.dataset.url = url;
    const name = document.createElement("span");
    name.className = "cached-name";
    name.title = url;
    name.textContent = decodeURIComponent(url.split("/").pop() || url);
    const meta = document.createElement("span");
    meta.className = "muted";
    meta.textContent = Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(1)} MB` : "";
    const use = button("Load", "small", "cached-load", () => onLoad(url));
    const del = button("Delete", "small danger", "cached-delete", async () => {
      del.disabled = true;
      try {
        await pkg.deleteCachedModel(url);
      } catch (err) {
        onError(err);
      }
      onChange();
    });
    li.append(name, meta, use, del);
    return li;
  });
  list.replaceChildren(...rows);
  empty.hidden = rows.length > 0;
}

function button(text, className, testid, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.dataset.testid = testid;
  b.addEventListener("click", onClick);
  return b;
}
