// Integrate: what an app developer needs — the endpoint, app keys (search-only, safe to ship), and
// copy-paste FindImage snippets that use an app key, never the secret key.

import { call, credentials } from "./api.js";
import { confirmDialog, h, replace } from "./dom.js";

const PLACEHOLDER = "YOUR_APP_KEY";

/** FindImage in each client the contract names, with the given endpoint, username, key and channel. */
export function snippets({ endpoint, username, key, channel }) {
  const q = (s) => `'${s.replaceAll("'", "'\\''")}'`; // shell single quotes
  const js = (s) => JSON.stringify(s);
  const channelCurl = channel ? ` \\\n  -F channel=${q(channel)}` : "";
  const channelJs = channel ? `\nform.append("channel", ${js(channel)});` : "";
  const channelWx = channel ? `, channel: ${js(channel)}` : "";
  const channelPy = channel ? `, "channel": ${js(channel)}` : "";
  return [
    ["curl", `curl ${endpoint} \\\n  -F username=${q(username)} \\\n  -F secretkey=${q(key)}${channelCurl} \\\n  -F image=@photo.jpg`],
    ["JavaScript (fetch)", `// photo: a Blob or File, e.g. from <input type="file"> or canvas.toBlob()
const form = new FormData();
form.append("username", ${js(username)});
form.append("secretkey", ${js(key)}); // an app key: it can only search${channelJs}
form.append("image", photo, "photo.jpg");
const answer = await (await fetch(${js(endpoint)}, { method: "POST", body: form })).json();
if (answer.returncode === 0 && answer.identifier) console.log(answer.identifier, answer.metadata);`],
    ["WeChat mini program", `wx.chooseMedia({ count: 1, mediaType: ["image"], success(res) {
  wx.uploadFile({
    url: ${js(endpoint)},
    filePath: res.tempFiles[0].tempFilePath,
    name: "image",
    formData: { username: ${js(username)}, secretkey: ${js(key)}${channelWx} },
    success(r) { const answer = JSON.parse(r.data); if (answer.identifier) console.log(answer.identifier); },
  });
} });`],
    ["Python (requests)", `import requests

with open("photo.jpg", "rb") as photo:
    answer = requests.post(
        ${js(endpoint)},
        data={"username": ${js(username)}, "secretkey": ${js(key)}${channelPy}},
        files={"image": photo},
    ).json()
if answer["returncode"] == 0 and "identifier" in answer:
    print(answer["identifier"], answer["metadata"])`],
  ];
}

function copyButton(text) {
  const button = h("button", { type: "button", class: "secondary small copy" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy by hand";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
  return button;
}

export async function integratePage(view) {
  const [{ keys }, { channels }] = await Promise.all([call("ListAppKeys"), call("ListChannels")]);
  const { username } = credentials();
  const endpoint = `${location.origin}/FindImage`;
  let shownKey = PLACEHOLDER;

  // ---- snippets
  const scope = h("select", { id: "snippet-channel", "aria-label": "Channel the snippets search" },
    h("option", { value: "" }, "All channels the key may search"),
    channels.map((c) => h("option", { value: c.channel }, c.channel)));
  const snippetBox = h("div", { id: "snippets" });
  function renderSnippets() {
    replace(snippetBox, snippets({ endpoint, username, key: shownKey, channel: scope.value }).map(([title, code]) =>
      h("div", { class: "snippet", dataset: { lang: title } },
        h("div", { class: "snippet-head" }, h("strong", {}, title), copyButton(() => code)),
        h("pre", {}, h("code", {}, code)))));
  }
  scope.addEventListener("change", renderSnippets);

  // ---- app keys
  const created = h("div", { id: "new-key", role: "status" });
  const name = h("input", { id: "appkey-name", required: true, pattern: "^[A-Za-z0-9@_.\\-]{1,64}$", maxlength: 64,
    placeholder: "e.g. webar-spring", title: "1 to 64 letters, digits, @ _ . -" });
  const limit = h("select", { id: "appkey-channels", multiple: true, size: Math.min(4, Math.max(2, channels.length)),
    "aria-label": "Only these channels (none selected: all)" }, channels.map((c) => h("option", { value: c.channel }, c.channel)));
  const form = h("form", { class: "inline-form", id: "create-appkey" },
    h("label", {}, "Name", name),
    h("label", {}, "Only these channels (none: all)", limit),
    h("button", { type: "submit", class: "primary" }, "Create app key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = [...limit.selectedOptions].map((o) => o.value);
    try {
      const body = await call("CreateAppKey", { name: name.value.trim(), channels: chosen.join(",") || null });
      shownKey = body.appkey;
      const webar = `/console/webar/#${new URLSearchParams({ username, appkey: body.appkey, channel: chosen.length === 1 ? chosen[0] : "" })}`;
      replace(created, h("div", { class: "notice ok" },
        h("p", {}, h("strong", {}, `App key “${body.name}” created. `), "Copy it now: it is shown only this once."),
        h("p", {}, h("code", { id: "new-appkey" }, body.appkey), " ", copyButton(() => body.appkey)),
        h("p", {}, "The snippets below use it. ", h("a", { href: webar, id: "webar-link" }, "Open the WebAR demo with it"), ".")));
      name.value = "";
      await renderKeys();
      renderSnippets();
    } catch (e) {
      replace(created, h("p", { class: "notice error" }, e.message));
    }
  });

  const keyTable = h("div", { id: "appkeys" });
  async function renderKeys(list) {
    const rows = list || (await call("ListAppKeys")).keys;
    replace(keyTable, rows.length ? h("table", { class: "table compact" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Channels"), h("th", {}, "Created (UTC)"), h("th", {}, ""))),
      h("tbody", {}, rows.map((k) => h("tr", { dataset: { name: k.name } },
        h("td", { class: "strong" }, k.name),
        h("td", {}, k.channels.length ? k.channels.join(", ") : h("span", { class: "muted" }, "all")),
        h("td", {}, k.created.replace("T", " ").replace("Z", "")),
        h("td", { class: "actions" }, h("button", { type: "button", class: "danger", "data-action": "revoke", onclick: () => revoke(k.name) }, "Revoke"))))))
      : h("p", { class: "muted", id: "no-appkeys" }, "No app keys yet."));
  }
  async function revoke(keyName) {
    const ok = await confirmDialog({ title: `Revoke app key “${keyName}”?`,
      body: "Apps and pages using it stop finding anything at once. Your other keys keep working.", confirm: "Revoke" });
    if (!ok) return;
    await call("RevokeAppKey", { name: keyName });
    await renderKeys();
  }

  await renderKeys(keys);
  renderSnippets();
  replace(view,
    h("div", { class: "page-head" }, h("h1", {}, "Integrate"),
      h("p", { class: "muted" }, "Apps, web pages and mini programs send a camera photo to FindImage and get back the target it shows.")),
    h("section", { class: "card" }, h("h2", {}, "Endpoint"),
      h("p", {}, h("code", { id: "endpoint" }, endpoint), " ", copyButton(() => endpoint)),
      h("p", { class: "muted small" }, "POST multipart/form-data: username, secretkey, image, channel (optional). ",
        h("a", { href: "/docs" }, "API reference"), ".")),
    h("section", { class: "card" }, h("h2", {}, "App keys"),
      h("p", { class: "muted small" }, "An app key goes in the secretkey field but can only search (FindImage, GetImage): ",
        "anyone can read it from a page's source, so never ship your secret key. Revoke a key to cut off one app."),
      keyTable, form, created),
    h("section", { class: "card" }, h("h2", {}, "Snippets"),
      h("div", { class: "toolbar" }, h("label", {}, "Channel", scope)), snippetBox));
}
