// Assistant replies as markdown (code blocks, lists, emphasis, tables), sanitised: marked turns
// the text into HTML and DOMPurify strips anything that could run (scripts, event handlers,
// javascript: URLs) before it reaches the page. A model's reply is untrusted text.
//
// Both libraries are the npm packages build.sh installs (pinned in NPM_TOOLS), served by
// www/serve.mjs at /vendor/; without them replies stay plain text.

let libs = null; // {marked, purify} once loaded; null before or without them

// Loads the libraries once; resolves to whether replies will be rendered.
export async function initMarkdown() {
  try {
    const [{ Marked }, { default: purify }] = await Promise.all([import("/vendor/marked.js"), import("/vendor/purify.js")]);
    libs = { marked: new Marked({ gfm: true }), purify };
  } catch (err) {
    console.warn("[demo] markdown libraries unavailable, replies stay plain text:", err);
  }
  return libs !== null;
}

// Renders the whole reply so far into `element` (called again on every streamed piece; an
// unclosed code fence renders as a code block until it closes). The source stays in
// data-markdown.
export function renderMarkdown(element, source) {
  element.dataset.markdown = source;
  if (!libs) {
    element.textContent = source;
    return;
  }
  const html = libs.marked.parse(source, { async: false });
  element.innerHTML = libs.purify.sanitize(html, { FORBID_TAGS: ["style", "form", "input", "button"] });
  element.classList.add("markdown");
}
