// Try it: search a photo (file, drop or webcam) like an app would, and show what came back.

import { call } from "./api.js";
import { formatNumber, h, percent, replace, stars, svg } from "./dom.js";

export async function tryPage(view, params) {
  const { channels } = await call("ListChannels");
  const scope = h("select", { id: "try-channel", "aria-label": "Channel to search" },
    h("option", { value: "" }, "All my channels"),
    channels.map((c) => h("option", { value: c.channel, selected: c.channel === params.get("channel") }, c.channel)));
  const input = h("input", { type: "file", id: "try-input", accept: "image/jpeg,image/png", class: "visually-hidden" });
  const drop = h("label", { class: "dropzone", for: "try-input", id: "try-drop" },
    h("strong", {}, "Drop a photo here"), h("span", { class: "muted" }, " or click to choose one."), input);
  const camButton = h("button", { type: "button", class: "secondary", id: "webcam" }, "Use webcam");
  const result = h("div", { id: "try-result" });
  const stage = h("div", { class: "stage", id: "try-stage" });

  for (const kind of ["dragenter", "dragover"]) drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const kind of ["dragleave", "drop"]) drop.addEventListener(kind, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files[0]) search(e.dataTransfer.files[0]); });
  input.addEventListener("change", () => { if (input.files[0]) search(input.files[0]); input.value = ""; });

  camButton.addEventListener("click", async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
    } catch (e) {
      replace(result, h("p", { class: "notice error" }, `No camera: ${e.message}`));
      return;
    }
    const video = h("video", { autoplay: true, playsinline: true, muted: true });
    video.srcObject = stream;
    const stop = () => stream.getTracks().forEach((t) => t.stop());
    const shoot = h("button", { type: "button", class: "primary", id: "capture" }, "Capture and search");
    shoot.addEventListener("click", () => {
      const canvas = h("canvas", { width: video.videoWidth, height: video.videoHeight });
      canvas.getContext("2d").drawImage(video, 0, 0);
      stop();
      canvas.toBlob((blob) => search(new File([blob], "webcam.jpg", { type: "image/jpeg" })), "image/jpeg", 0.9);
    });
    replace(stage, video);
    replace(result, h("div", { class: "actions" }, shoot));
  });

  async function search(file) {
    const url = URL.createObjectURL(file);
    const photo = h("img", { src: url, alt: "Your photo", id: "try-photo" });
    replace(stage, photo);
    replace(result, h("p", { class: "muted" }, "Searching…"));
    await photo.decode().catch(() => {});
    try {
      const body = await call("FindImage", { channel: scope.value || null, maxresults: 5 }, { file });
      show(body, photo);
    } catch (e) {
      replace(result, h("p", { class: "notice error", id: "try-error", dataset: { returncode: e.code } }, e.message));
    }
  }

  function show(body, photo) {
    const where = scope.value ? `channel “${scope.value}”` : `all your channels (${channels.map((c) => c.channel).join(", ") || "none"})`;
    const targets = (scope.value ? channels.filter((c) => c.channel === scope.value) : channels).reduce((n, c) => n + c.count, 0);
    if (!body.identifier) {
      replace(result, h("div", { class: "notice warn", id: "no-match" },
        h("strong", {}, "No target found."),
        h("p", {}, `Searched ${where}: ${formatNumber(targets)} target${targets === 1 ? "" : "s"}. `,
          body.level ? ["Photo quality: ", stars(body.level), ` level ${body.level}. `] : null),
        h("p", { class: "small" }, "Tips: fill more of the photo with the target, avoid glare and motion blur, and check the right channel is selected.")));
      return;
    }
    // The SVG shares the photo's pixel coordinate system, so corners from the API are drawn as they are.
    const overlay = svg("svg", { class: "overlay", viewBox: `0 0 ${photo.naturalWidth} ${photo.naturalHeight}`, preserveAspectRatio: "none" });
    for (const [i, match] of (body.results || [body]).entries()) {
      overlay.append(svg("polygon", { class: i === 0 ? "outline best" : "outline", points: match.corners.map((p) => p.join(",")).join(" "),
        "data-identifier": match.identifier }));
      const [x, y] = match.corners[0];
      overlay.append(svg("text", { x, y: Math.max(24, y - 8), class: "outline-label" }, match.identifier));
    }
    stage.append(overlay);
    const items = (body.results || [body]).map((m) => h("li", { class: "match" },
      h("a", { href: `#/channel/${encodeURIComponent(m.channel)}/target/${encodeURIComponent(m.identifier)}`, class: "strong" }, m.identifier),
      h("span", { class: "muted" }, ` in ${m.channel} · score ${percent(m.score, 0)}`),
      m.metadata ? h("pre", { class: "meta" }, m.metadata) : null));
    replace(result, h("div", { class: "notice ok", id: "match" },
      h("strong", {}, `Found ${body.identifier}`), body.level ? h("p", { class: "small" }, "Photo quality: ", stars(body.level)) : null,
      h("ul", { class: "matches" }, items)));
  }

  replace(view,
    h("div", { class: "page-head" }, h("h1", {}, "Try it"),
      h("p", { class: "muted" }, "Search a photo exactly as an app does with FindImage. Matches are counted in the statistics.")),
    h("section", { class: "card" }, h("div", { class: "toolbar" }, h("label", {}, "Search in ", scope), camButton), drop),
    h("div", { class: "split" }, h("section", { class: "card figure" }, stage), h("section", { class: "card" }, h("h2", {}, "Result"), result)));
}
