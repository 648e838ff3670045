// vlkge serve: autocomplete for the entity inputs (the pages work without it).
// data-search="link": a suggestion opens the entity's page; "fill": it puts the entity's id
// into the input. Suggestions are built as DOM nodes with textContent: nothing is parsed as HTML.
"use strict";

(function () {
  const DELAY_MS = 120;
  const SHOWN = 8;

  function setup(input) {
    const list = input.parentElement.querySelector(".suggestions");
    const run = encodeURIComponent(input.dataset.run);
    let timer = null;
    let latest = 0;

    function hide() {
      list.hidden = true;
      list.replaceChildren();
    }

    function suggestion(hit) {
      const link = document.createElement("a");
      link.href = `/runs/${run}/entity?id=${encodeURIComponent(hit.entity)}`;
      const name = document.createElement("b");
      name.textContent = hit.name;
      const id = document.createElement("span");
      id.className = "label";
      id.textContent = hit.entity;
      link.append(name, id);
      if (hit.text) {
        const text = document.createElement("span");
        text.className = "text";
        text.textContent = hit.text;
        link.append(text);
      }
      if (input.dataset.search === "fill") {
        link.addEventListener("click", (event) => {
          event.preventDefault();
          input.value = hit.entity;
          hide();
        });
      }
      const item = document.createElement("li");
      item.append(link);
      return item;
    }

    async function lookup(query) {
      const ticket = ++latest;
      if (!query.trim()) {
        hide();
        return;
      }
      const url = `/api/runs/${run}/search?limit=${SHOWN}&q=${encodeURIComponent(query)}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (ticket !== latest) return; // a newer keystroke is on its way
      if (!response.ok) {
        hide();
        return;
      }
      const hits = await response.json();
      list.replaceChildren(...hits.map(suggestion));
      list.hidden = hits.length === 0;
    }

    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => lookup(input.value), DELAY_MS);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") hide();
    });
    document.addEventListener("click", (event) => {
      if (!input.parentElement.contains(event.target)) hide();
    });
  }

  document.querySelectorAll("input[data-search]").forEach(setup);
})();
