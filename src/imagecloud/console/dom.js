// DOM helpers. Every piece of user data reaches the page through textContent or an attribute set with
// setAttribute, never through innerHTML, so identifiers, metadata and file names are always inert text.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    // CSSOM, not a style attribute: the Content-Security-Policy forbids inline style attributes.
    else if (key === "style") Object.assign(el.style, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("a", {href: "#/"}, "text", child…): an element whose text children are plain text nodes. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Level 1..5 as stars, with the number for screen readers and tests. */
export function stars(level) {
  const n = Math.max(0, Math.min(5, Number(level) || 0));
  return h("span", { class: "stars", title: `level ${n} of 5`, "aria-label": `level ${n} of 5`, dataset: { level: n } },
    "★".repeat(n), h("span", { class: "stars-off" }, "★".repeat(5 - n)));
}

export function percent(ratio, digits = 1) {
  return `${(Number(ratio) * 100).toFixed(digits)}%`;
}

export function formatNumber(n) {
  return Number(n).toLocaleString("en-US");
}

/** A modal yes/no question; resolves true only when the owner pressed the confirm button. */
export function confirmDialog({ title, body, confirm = "Confirm", danger = true }) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "modal", "aria-labelledby": "modal-title" });
    // Leaving the page (a link, Back) answers "no": the question belongs to the page it was asked on.
    const onNavigate = () => close(false);
    const close = (answer) => {
      window.removeEventListener("hashchange", onNavigate);
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    window.addEventListener("hashchange", onNavigate);
    append(dialog, [
      h("h2", { id: "modal-title" }, title),
      h("p", {}, body),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: danger ? "danger" : "primary", id: "modal-confirm", onclick: () => close(true) }, confirm)),
    ]);
    dialog.addEventListener("cancel", () => close(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Downloads text as a file without any server round trip. */
export function download(filename, text, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
