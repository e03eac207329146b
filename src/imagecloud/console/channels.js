// Channels: list with target counts and quota use, create, delete.

import { ApiError, call } from "./api.js";
import { confirmDialog, formatNumber, h, percent, replace } from "./dom.js";

const NAME_RULE = "^[A-Za-z0-9@_.\\-]{1,64}$";

export async function channelsPage(view) {
  const { channels } = await call("ListChannels");
  const message = h("p", { class: "notice", role: "status", hidden: true });
  const name = h("input", { id: "new-channel", name: "channel", required: true, pattern: NAME_RULE, maxlength: 64,
    placeholder: "e.g. spring-posters", title: "1 to 64 letters, digits, @ _ . -" });
  const create = h("form", { class: "inline-form", id: "create-channel" },
    h("label", {}, "New channel", name),
    h("button", { type: "submit", class: "primary" }, "Create channel"));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await call("CreateChannel", { channel: name.value.trim() });
      location.hash = `#/channel/${encodeURIComponent(name.value.trim())}`;
    } catch (e) {
      const why = e instanceof ApiError && e.code === 20002 ? "That name is taken or not allowed" : e.message;
      flash(message, why, "error");
    }
  });

  const rows = channels.map((c) => {
    const used = c.quota > 0 ? c.count / c.quota : 1;
    const link = `#/channel/${encodeURIComponent(c.channel)}`;
    return h("tr", { dataset: { channel: c.channel } },
      h("td", {}, h("a", { href: link, class: "strong" }, c.channel)),
      h("td", { class: "num" }, formatNumber(c.count)),
      h("td", {},
        h("div", { class: "quota" },
          h("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": c.quota, "aria-valuenow": c.count },
            h("span", { style: { width: `${Math.min(100, used * 100).toFixed(2)}%` } })),
          h("span", { class: "muted small" }, `${formatNumber(c.count)} of ${formatNumber(c.quota)} (${percent(used, used < 0.01 ? 2 : 0)})`))),
      h("td", { class: "actions" },
        h("a", { href: link, class: "button secondary" }, "Targets"),
        h("a", { href: `#/stats?channel=${encodeURIComponent(c.channel)}`, class: "button secondary" }, "Statistics"),
        h("button", { type: "button", class: "danger", "data-action": "delete", onclick: () => remove(c) }, "Delete")));
  });

  async function remove(c) {
    const ok = await confirmDialog({
      title: `Delete channel “${c.channel}”?`,
      body: `Its ${formatNumber(c.count)} target${c.count === 1 ? "" : "s"} and their files are removed for good, and apps searching it get “channel not exists”.`,
      confirm: "Delete channel",
    });
    if (!ok) return;
    try {
      await call("DeleteChannel", { channel: c.channel });
      await channelsPage(view);
    } catch (e) {
      flash(message, e.message, "error");
    }
  }

  const table = channels.length
    ? h("table", { class: "table", id: "channels" },
        h("thead", {}, h("tr", {}, h("th", {}, "Channel"), h("th", { class: "num" }, "Targets"), h("th", {}, "Quota use"), h("th", {}, ""))),
        h("tbody", {}, rows))
    : h("div", { class: "empty" }, h("p", {}, "You have no channels yet."), h("p", { class: "muted" }, "Create one above, then drop images into it."));

  replace(view,
    h("div", { class: "page-head" }, h("h1", {}, "Channels"),
      h("p", { class: "muted" }, "A channel is a collection of target images that apps search with FindImage.")),
    h("section", { class: "card" }, create, message),
    h("section", { class: "card" }, table));
}

export function flash(el, text, kind = "ok") {
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = false;
}
