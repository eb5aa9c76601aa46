// Spares the search page a page load where it can: results (with facets) as you type, title
// suggestions under the field, and more results as you scroll; and moves the history's slider. Without this script the form and
// the "More results" link do the same with a page load each; the server renders both.
(() => {
  "use strict";
  // A control that shows another page as it changes (the history's version slider).
  for (const control of document.querySelectorAll("[data-submit-on-change]")) {
    const output = control.form.querySelector(`output[for="${control.id}"]`);
    control.addEventListener("input", () => {
      if (output) output.textContent = `${control.value} of ${control.max}`;
    });
    control.addEventListener("change", () => control.form.requestSubmit());
  }

  const form = document.querySelector("form.search");
  if (!form) return;
  const input = form.elements.q;
  const suggestions = document.getElementById("suggestions");
  let typing;
  let latest = 0;

  // The results section of the page at `url`, fetched as a fragment.
  async function fragment(url) {
    const target = new URL(url, location.href);
    target.searchParams.set("fragment", "results");
    const response = await fetch(target, { headers: { accept: "text/html" } });
    if (!response.ok) return null;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    return doc.getElementById("results");
  }

  function formUrl() {
    const url = new URL(form.action, location.href);
    for (const [name, value] of new FormData(form)) if (value) url.searchParams.set(name, value);
    return url;
  }

  async function refresh() {
    const mine = ++latest;
    const url = formUrl();
    const fresh = await fragment(url);
    // A slower answer to an earlier keystroke never replaces a later one.
    if (!fresh || mine !== latest) return;
    history.replaceState(null, "", url);
    document.getElementById("results").replaceWith(fresh);
    watchMore();
  }

  async function suggest() {
    const q = input.value.trim();
    if (!q) return suggestions.replaceChildren();
    const response = await fetch("/api/v1/suggest?limit=8&q=" + encodeURIComponent(q));
    if (!response.ok) return;
    const { items } = await response.json();
    suggestions.replaceChildren(...items.map((item) => new Option(item.name)));
  }

  input.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { refresh(); suggest(); }, 150);
  });
  form.elements.sort?.addEventListener("change", refresh);
  form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });

  // "More results", followed when it scrolls into view: its page's hits are appended.
  let observer;
  function watchMore() {
    observer?.disconnect();
    const more = document.querySelector("#results a.more");
    if (!more || !("IntersectionObserver" in window)) return;
    observer = new IntersectionObserver(async (entries) => {
      if (!entries.some((entry) => entry.isIntersecting)) return;
      observer.disconnect();
      const next = await fragment(more.href);
      if (!next || !more.isConnected) return;
      document.querySelector("#results ol.hits").append(...next.querySelectorAll("ol.hits > li"));
      const after = next.querySelector("a.more");
      if (after) more.replaceWith(after); else more.remove();
      watchMore();
    });
    observer.observe(more);
  }
  watchMore();
})();
