// One target: its keypoints coloured by the rating self-test, the rating in words, metadata, a new image
// in its place (UpdateImage), removal.

import { call, thumbnailUrl } from "./api.js";
import { confirmDialog, formatNumber, h, percent, replace, stars } from "./dom.js";

// Re-found in none … all of the simulated views: red (never) through orange and yellow to green (always).
const COLOURS = ["#ef4444", "#f97316", "#eab308", "#22c55e"];

function colourFor(count, views) {
  return COLOURS[Math.round((Math.min(count, views) / Math.max(1, views)) * (COLOURS.length - 1))];
}

function drawKeypoints(canvas, image, detail) {
  const views = detail.rating.views;
  const scale = canvas.width / detail.width;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.fillStyle = "rgba(255,255,255,0.25)"; // lightens the photo so the dots read on any picture
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const radius = Math.max(2.5, canvas.width / 240);
  // Weak points first so the re-found ones stay on top where they overlap.
  const sorted = [...detail.keypoints].sort((a, b) => a[2] - b[2]);
  for (const [x, y, count] of sorted) {
    ctx.beginPath();
    ctx.arc(x * scale, y * scale, radius, 0, 2 * Math.PI);
    ctx.fillStyle = colourFor(count, views);
    ctx.fill();
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(0,0,0,0.55)";
    ctx.stroke();
  }
}

function ratingInWords(d) {
  const r = d.rating;
  const next = r.bands.find((b) => b.level === d.level + 1);
  const lines = [
    `We found ${formatNumber(r.keypoints)} distinctive points (corners and edges of detail) in this image.`,
    `Then we photographed it ${r.views} times in simulation, as a phone sees a print at arm's length — tilted, rotated, dim, blurred, noisy — and looked for the same points again.`,
    `On average ${formatNumber(r.mean_refound)} points were found again in each photo (a match ratio of ${percent(d.matchratio)}). From level 3 on, that is as many as a photo needs to be recognised.`,
  ];
  if (next) {
    lines.push(`Level ${next.level} needs ${formatNumber(next.min_refound)} points found again per photo.`);
    lines.push("Red points were never found again: fine detail that vanishes at photo distance, repeated patterns and smooth areas do that. Large, varied, high-contrast detail over the whole image raises the level.");
  } else {
    lines.push("That is the best level: this image will be recognised easily.");
  }
  return lines;
}

export async function detailPage(view, channel, identifier) {
  const d = await call("GetImageDetail", { channel, identifier });
  const r = d.rating;
  const channelLink = `#/channel/${encodeURIComponent(channel)}`;

  // ---- image with keypoints
  const longSide = 720;
  const f = Math.min(1, longSide / Math.max(d.width, d.height));
  const canvas = h("canvas", { id: "keypoints", width: Math.round(d.width * f), height: Math.round(d.height * f),
    "aria-label": `${r.keypoints} keypoints drawn over the image` });
  const image = new Image();
  image.addEventListener("load", () => {
    drawKeypoints(canvas, image, d);
    canvas.dataset.drawn = String(d.keypoints.length);
  });
  image.src = thumbnailUrl(d.imageurl, 1024);
  const histogram = new Array(r.views + 1).fill(0);
  for (const [, , c] of d.keypoints) histogram[Math.min(r.views, c)] += 1;
  const legend = h("ul", { class: "legend", id: "legend" }, histogram.map((n, c) =>
    h("li", { dataset: { views: c } }, h("span", { class: "swatch", style: { background: colourFor(c, r.views) } }),
      `${c === 0 ? "never" : c === r.views ? "in every view" : `in ${c} of ${r.views} views`}: ${formatNumber(n)}`)));

  // ---- bands: what each level needs, and how often targets of that level were found in simulated photos
  const found = (b) => (b.found_share === null || b.found_share === undefined ? "–" : percent(b.found_share, 0));
  const bands = h("table", { class: "table compact", id: "bands" },
    h("thead", {}, h("tr", {}, h("th", {}, "Level"), h("th", {}, "Points found again per photo ≥"),
      h("th", {}, "Photos recognised"))),
    h("tbody", {}, r.bands.map((b) => h("tr", { class: b.level === d.level ? "current" : "" },
      h("td", {}, stars(b.level)), h("td", {}, formatNumber(b.min_refound)), h("td", {}, found(b))))));

  // ---- metadata editor
  const pretty = (() => {
    if (d.metadata === null) return "";
    try { return JSON.stringify(JSON.parse(d.metadata), null, 2); } catch { return d.metadata; }
  })();
  const editor = h("textarea", { id: "metadata", rows: 8, spellcheck: "false", "aria-label": "Metadata (JSON)" });
  editor.value = pretty;
  const metaStatus = h("p", { class: "notice", id: "metadata-status", role: "status", hidden: true });
  const save = h("button", { type: "button", class: "primary", id: "metadata-save" }, "Save metadata");
  const showStatus = (text, kind) => { metaStatus.textContent = text; metaStatus.className = `notice ${kind}`; metaStatus.hidden = false; };
  editor.addEventListener("input", () => {
    const v = editor.value.trim();
    try { if (v) JSON.parse(v); editor.classList.remove("invalid"); save.disabled = false; metaStatus.hidden = true; }
    catch (e) { editor.classList.add("invalid"); save.disabled = true; showStatus(`Not valid JSON: ${e.message}`, "error"); }
  });
  save.addEventListener("click", async () => {
    const v = editor.value.trim();
    try {
      if (!v) throw new Error("Metadata cannot be emptied here; write {} for none.");
      JSON.parse(v);
      // Sent compact: apps receive the string exactly as stored.
      await call("UpdateImage", { channel, identifier, metadata: JSON.stringify(JSON.parse(v)) });
      showStatus("Metadata saved.", "ok");
    } catch (e) {
      showStatus(e.message, "error");
    }
  });

  // ---- replace the image: same identifier and metadata, re-rated; apps find the new picture at once
  const replacement = h("input", { type: "file", id: "replace-input", accept: "image/jpeg,image/png", class: "visually-hidden" });
  const replaceStatus = h("p", { class: "notice", id: "replace-status", role: "status", hidden: true });
  replacement.addEventListener("change", async () => {
    const file = replacement.files[0];
    replacement.value = "";
    if (!file) return;
    replaceStatus.className = "notice";
    replaceStatus.textContent = "Uploading and rating…";
    replaceStatus.hidden = false;
    try {
      await call("UpdateImage", { channel, identifier }, { file });
      await detailPage(view, channel, identifier);
    } catch (e) {
      replaceStatus.className = "notice error";
      replaceStatus.textContent = e.message;
    }
  });

  const remove = h("button", { type: "button", class: "danger", id: "remove-target" }, "Remove target");
  remove.addEventListener("click", async () => {
    const ok = await confirmDialog({ title: `Remove “${identifier}”?`,
      body: "The image and its metadata are deleted and apps will no longer find it. This cannot be undone.", confirm: "Remove" });
    if (!ok) return;
    await call("RemoveImage", { channel, identifier });
    location.hash = channelLink;
  });

  replace(view,
    h("div", { class: "page-head" },
      h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Channels"), " / ", h("a", { href: channelLink }, channel), " / "),
      h("h1", { id: "target-identifier" }, identifier),
      h("p", { class: "muted" }, stars(d.level), ` level ${d.level} · match ratio ${percent(d.matchratio)} · ${d.width} × ${d.height} px · `,
        h("a", { href: d.imageurl, target: "_blank", rel: "noopener" }, "original"), " · ",
        h("a", { href: `#/stats?channel=${encodeURIComponent(channel)}&identifier=${encodeURIComponent(identifier)}` }, "statistics"))),
    h("div", { class: "split" },
      h("section", { class: "card figure" }, canvas,
        h("p", { class: "muted small" }, "Each dot is a keypoint, coloured by how often the self-test found it again:"), legend),
      h("div", { class: "stack" },
        h("section", { class: "card" }, h("h2", {}, "Why this level"),
          h("div", { id: "rating-words" }, ratingInWords(d).map((line) => h("p", {}, line))), bands),
        h("section", { class: "card" }, h("h2", {}, "Metadata"),
          h("p", { class: "muted small" }, "Any JSON document; FindImage returns it to apps with the match."),
          editor, metaStatus, h("div", { class: "actions" }, save)),
        h("section", { class: "card" }, h("h2", {}, "Image"),
          h("p", { class: "muted small" }, "Upload a new picture for this target: its identifier, metadata and statistics stay, and apps find the new one at once."),
          h("div", { class: "actions" }, h("label", { for: "replace-input", class: "button secondary", id: "replace-image" }, "Replace image…", replacement)),
          replaceStatus),
        h("section", { class: "card" }, h("h2", {}, "Danger zone"), h("div", { class: "actions" }, remove)))));
}
