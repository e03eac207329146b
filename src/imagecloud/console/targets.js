// Targets of one channel: paged thumbnail grid, identifier-prefix search, drag-and-drop upload (with
// optional metadata, and a warning when a new image looks like a target the channel already has).

import { ApiError, call, thumbnailUrl } from "./api.js";
import { formatNumber, h, percent, replace, stars } from "./dom.js";

const PAGE_SIZE = 24;

/** An identifier from a file name: disallowed characters become "_", length kept within 3..50. */
export function identifierFor(fileName) {
  let id = fileName.replace(/\.[A-Za-z0-9]{1,5}$/, "").replace(/[^A-Za-z0-9@_.]/g, "_").slice(0, 50);
  while (id.length < 3) id += "_";
  return id;
}

export async function targetsPage(view, channel, params) {
  const prefix = params.get("q") || "";
  const page = Math.max(0, Number.parseInt(params.get("page") || "0", 10) || 0);
  const [list, listing] = await Promise.all([
    call("ListChannels"),
    call("GetImages", { channel, position: page * PAGE_SIZE, count: PAGE_SIZE, prefix }),
  ]);
  const info = list.channels.find((c) => c.channel === channel);
  const here = (p, q = prefix) => `#/channel/${encodeURIComponent(channel)}?${new URLSearchParams({ q, page: p })}`;

  // ---- search
  const search = h("input", { type: "search", id: "search", value: prefix, placeholder: "Identifier starts with…",
    pattern: "[A-Za-z0-9@_.]*", maxlength: 50, "aria-label": "Search by identifier prefix" });
  const searchForm = h("form", { class: "search", id: "search-form", role: "search" }, search,
    h("button", { type: "submit", class: "secondary" }, "Search"));
  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = here(0, search.value.trim());
  });

  // ---- upload
  const input = h("input", { type: "file", id: "upload-input", accept: "image/jpeg,image/png", multiple: true, class: "visually-hidden" });
  const queue = h("ul", { class: "upload-queue", id: "upload-queue" });
  const drop = h("label", { class: "dropzone", id: "dropzone", for: "upload-input" },
    h("strong", {}, "Drop JPEG or PNG images here"),
    h("span", { class: "muted" }, " or click to choose files. Each file name becomes the identifier."),
    input);
  const metadata = h("textarea", { id: "upload-metadata", rows: 2, spellcheck: false,
    placeholder: '{"title": "Spring show"}', "aria-describedby": "upload-metadata-help" });
  const metadataField = h("label", { class: "metadata-field" }, "Metadata for the next uploads (optional JSON)", metadata,
    h("span", { class: "muted small", id: "upload-metadata-help" }, "Returned by FindImage with the match, e.g. a title or a link."));
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const kind of ["dragleave", "drop"]) drop.addEventListener(kind, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); upload([...e.dataTransfer.files]); });
  input.addEventListener("change", () => { upload([...input.files]); input.value = ""; });

  async function upload(files) {
    const jobs = files.map((file) => {
      const identifier = identifierFor(file.name);
      const bar = h("progress", { max: 1, value: 0 });
      const status = h("span", { class: "status" }, "waiting");
      const row = h("li", { dataset: { identifier } }, h("span", { class: "file" }, identifier), bar, status);
      queue.append(row);
      return { file, identifier, bar, status, row };
    });
    let added = 0;
    const meta = metadata.value.trim() || null;
    // One at a time: the server rates each image on a bounded pool, parallel uploads would only queue there.
    for (const job of jobs) {
      job.status.textContent = "uploading";
      try {
        const body = await call("AddImage", { channel, identifier: job.identifier, metadata: meta }, {
          file: job.file, onProgress: (f) => { job.bar.value = f; },
        });
        job.bar.value = 1;
        job.row.classList.add("ok");
        job.status.replaceChildren("added, ", stars(body.level), ` matchratio ${percent(body.matchratio)}`);
        if (body.similar && body.similar.length) job.row.append(similarWarning(body.similar));
        added += 1;
      } catch (e) {
        // The bytes may all have gone out, but nothing was stored: a full bar would say otherwise.
        job.bar.value = 0;
        job.bar.classList.add("void");
        job.row.classList.add("failed");
        job.row.dataset.returncode = e instanceof ApiError ? e.code : -1;
        job.status.textContent = `failed: ${e.message}`;
      }
    }
    if (added) await Promise.all([refreshGrid(), refreshQuota()]);
  }

  function similarWarning(similar) {
    // Near-identical targets in one channel compete, and FindImage answers none of them: say so at upload.
    const links = similar.map((m, i) => [i ? ", " : "",
      h("a", { href: `#/channel/${encodeURIComponent(channel)}/target/${encodeURIComponent(m.identifier)}` }, m.identifier),
      ` (${percent(m.score)})`]);
    return h("p", { class: "notice warn similar", dataset: { similar: similar.map((m) => m.identifier).join(" ") } },
      "Looks like ", links, ": a photo of them may find none. Remove or replace all but one.");
  }

  // ---- grid
  const grid = h("div", { class: "grid", id: "grid" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const summary = h("p", { class: "muted", id: "grid-summary" });

  function renderGrid(body) {
    const cards = body.images.map((img) => {
      const link = `#/channel/${encodeURIComponent(channel)}/target/${encodeURIComponent(img.identifier)}`;
      return h("a", { class: "tile", href: link, dataset: { identifier: img.identifier } },
        h("div", { class: "thumb" }, h("img", { src: thumbnailUrl(img.imageurl, 256), alt: "", loading: "lazy" })),
        h("div", { class: "tile-body" },
          h("div", { class: "ident", title: img.identifier }, img.identifier),
          h("div", { class: "tile-meta" }, stars(img.level), h("span", { class: "muted small" }, `match ${percent(img.matchratio)}`))));
    });
    replace(grid, cards.length ? cards : h("p", { class: "empty" }, prefix ? `No identifier starts with “${prefix}”.` : "No targets yet: drop images above."));
    const first = body.totalcount ? page * PAGE_SIZE + 1 : 0;
    const last = page * PAGE_SIZE + body.images.length;
    summary.textContent = `${formatNumber(first)}–${formatNumber(last)} of ${formatNumber(body.totalcount)} target${body.totalcount === 1 ? "" : "s"}${prefix ? ` starting with “${prefix}”` : ""}`;
    const pages = Math.max(1, Math.ceil(body.totalcount / PAGE_SIZE));
    replace(pager,
      page > 0 ? h("a", { href: here(page - 1), class: "button secondary", rel: "prev" }, "← Previous") : null,
      h("span", { class: "muted" }, `Page ${page + 1} of ${pages}`),
      page + 1 < pages ? h("a", { href: here(page + 1), class: "button secondary", rel: "next" }, "Next →") : null);
  }

  const quota = h("span", { id: "quota" });
  function renderQuota(channelInfo) {
    quota.textContent = channelInfo ? `${formatNumber(channelInfo.count)} of ${formatNumber(channelInfo.quota)} targets used` : "";
  }
  async function refreshQuota() {
    renderQuota((await call("ListChannels")).channels.find((c) => c.channel === channel));
  }

  async function refreshGrid() {
    renderGrid(await call("GetImages", { channel, position: page * PAGE_SIZE, count: PAGE_SIZE, prefix }));
  }

  renderGrid(listing);
  renderQuota(info);
  replace(view,
    h("div", { class: "page-head" },
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Channels"), " / "),
      h("h1", {}, channel),
      info ? h("p", { class: "muted" }, quota, " · ",
        h("a", { href: `#/try?channel=${encodeURIComponent(channel)}` }, "Try a photo"), " · ",
        h("a", { href: `#/stats?channel=${encodeURIComponent(channel)}` }, "Statistics")) : null),
    h("section", { class: "card" }, drop, metadataField, queue),
    h("section", { class: "card" }, h("div", { class: "toolbar" }, searchForm, summary), grid, pager));
}

