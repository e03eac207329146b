// Statistics: matches per day for the user, a channel or a target, and searches (with how many found
// nothing) as a second series; date-range picker; CSV export.

import { call } from "./api.js";
import { download, formatNumber, h, replace, svg } from "./dom.js";

const iso = (d) => d.toISOString().slice(0, 10); // yyyy-mm-dd (UTC, like the server's days)
const compact = (s) => s.replaceAll("-", ""); // yyyymmdd, what the endpoint takes
const utcToday = () => { const n = new Date(); return new Date(Date.UTC(n.getUTCFullYear(), n.getUTCMonth(), n.getUTCDate())); };
const addDays = (d, n) => new Date(d.getTime() + n * 86400000);

function presets() {
  const today = utcToday();
  const y = today.getUTCFullYear();
  const m = today.getUTCMonth();
  return [
    ["Last 7 days", addDays(today, -6), today],
    ["Last 30 days", addDays(today, -29), today],
    ["This month", new Date(Date.UTC(y, m, 1)), today],
    ["Last month", new Date(Date.UTC(y, m - 1, 1)), new Date(Date.UTC(y, m, 0))],
    ["This year", new Date(Date.UTC(y, 0, 1)), today],
  ];
}

function days(from, to) {
  const out = [];
  for (let d = new Date(`${from}T00:00:00Z`); iso(d) <= to; d = addDays(d, 1)) out.push(iso(d));
  return out;
}

function chart(series, withSearches) {
  const W = 760, H = 260, left = 44, bottom = 28, top = 12;
  const max = Math.max(1, ...series.map((s) => (withSearches ? Math.max(s.count, s.searches) : s.count)));
  const step = niceStep(max);
  const yMax = Math.ceil(max / step) * step;
  const bw = (W - left - 8) / series.length;
  const y = (v) => top + (H - top - bottom) * (1 - v / yMax);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", id: "chart", role: "img",
    "aria-label": `Matches per day, ${series.length} days, ${series.reduce((n, s) => n + s.count, 0)} in total` });
  for (let v = 0; v <= yMax; v += step) {
    root.append(svg("line", { x1: left, x2: W - 8, y1: y(v), y2: y(v), class: "grid-line" }));
    root.append(svg("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, formatNumber(v)));
  }
  const every = Math.ceil(series.length / 10);
  series.forEach((s, i) => {
    const x = left + i * bw;
    if (s.count > 0) {
      root.append(svg("rect", { x: x + bw * 0.12, y: y(s.count), width: Math.max(1, bw * 0.76), height: y(0) - y(s.count),
        class: "bar", "data-date": s.date, "data-count": s.count }, svg("title", {}, `${s.date}: ${s.count}`)));
    }
    if (i % every === 0) root.append(svg("text", { x: x + bw / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, s.date.slice(5)));
  });
  if (withSearches) {
    // Searches as a line over the match bars: a gap between them is photos that found nothing.
    const points = series.map((s, i) => `${left + (i + 0.5) * bw},${y(s.searches)}`).join(" ");
    root.append(svg("polyline", { points, class: "search-line" }));
    series.forEach((s, i) => {
      if (s.searches > 0) {
        root.append(svg("circle", { cx: left + (i + 0.5) * bw, cy: y(s.searches), r: 3.5, class: "search-point",
          "data-date": s.date, "data-searches": s.searches, "data-nomatch": s.nomatch },
        svg("title", {}, `${s.date}: ${s.searches} searches, ${s.nomatch} found nothing`)));
      }
    });
  }
  return root;
}

function legend() {
  return h("p", { class: "legend small" },
    h("span", { class: "key bar-key" }), " matches ", h("span", { class: "key line-key" }), " searches (FindImage calls)");
}

function niceStep(max) {
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  return Math.max(1, [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) || mag * 10);
}

export async function statsPage(view, params) {
  const { channels } = await call("ListChannels");
  const today = iso(utcToday());
  const channel = h("select", { id: "stats-channel", "aria-label": "Channel" },
    h("option", { value: "" }, "All my channels"),
    channels.map((c) => h("option", { value: c.channel, selected: c.channel === params.get("channel") }, c.channel)));
  const identifier = h("input", { id: "stats-identifier", placeholder: "any target", value: params.get("identifier") || "",
    pattern: "[A-Za-z0-9@_.]{3,50}", "aria-label": "Target identifier" });
  const from = h("input", { type: "date", id: "stats-from", value: iso(addDays(utcToday(), -29)), max: today });
  const to = h("input", { type: "date", id: "stats-to", value: today, max: today });
  const presetButtons = presets().map(([label, a, b]) => h("button", { type: "button", class: "chip", onclick: () => {
    from.value = iso(a); to.value = iso(b); load();
  } }, label));
  const out = h("div", { id: "stats-out" });
  const form = h("form", { class: "stats-form", id: "stats-form" },
    h("label", {}, "Channel", channel), h("label", {}, "Target", identifier),
    h("label", {}, "From", from), h("label", {}, "To", to),
    h("button", { type: "submit", class: "primary" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  channel.addEventListener("change", () => { if (!channel.value) identifier.value = ""; load(); });

  async function load() {
    const a = from.value, b = to.value;
    if (!a || !b || a > b) return replace(out, h("p", { class: "notice error" }, "Choose a start date on or before the end date."));
    if (identifier.value && !channel.value) return replace(out, h("p", { class: "notice error" }, "Choose the target's channel first."));
    replace(out, h("p", { class: "muted" }, "Loading…"));
    let body;
    try {
      body = await call("Statistics", { startdate: compact(a), enddate: compact(b), channel: channel.value || null, identifier: identifier.value || null });
    } catch (e) {
      // The longest range is the server's setting (max_statistics_days), so the server is the judge.
      const why = e.code === 20002 ? "The server refused this range: it is longer than the server allows." : e.message;
      return replace(out, h("p", { class: "notice error", id: "stats-error" }, why));
    }
    const keyName = channel.value ? "identifier" : "channel";
    const perDay = new Map();
    const perKey = new Map();
    for (const r of body.records) {
      const date = `${r.date.slice(0, 4)}-${r.date.slice(4, 6)}-${r.date.slice(6, 8)}`;
      perDay.set(date, (perDay.get(date) || 0) + r.count);
      perKey.set(r[keyName], (perKey.get(r[keyName]) || 0) + r.count);
    }
    // Searches are counted per channel searched, not per target: shown when no target is chosen.
    const withSearches = Array.isArray(body.searches);
    const searched = new Map();
    for (const r of body.searches || []) {
      const date = `${r.date.slice(0, 4)}-${r.date.slice(4, 6)}-${r.date.slice(6, 8)}`;
      const day = searched.get(date) || { searches: 0, nomatch: 0 };
      searched.set(date, { searches: day.searches + r.count, nomatch: day.nomatch + r.nomatch });
    }
    const series = days(a, b).map((date) => ({ date, count: perDay.get(date) || 0, ...(searched.get(date) || { searches: 0, nomatch: 0 }) }));
    const total = series.reduce((n, s) => n + s.count, 0);
    const searchTotal = series.reduce((n, s) => n + s.searches, 0);
    const missTotal = series.reduce((n, s) => n + s.nomatch, 0);
    const scopeText = identifier.value ? `target ${identifier.value}` : channel.value ? `channel ${channel.value}` : "all your channels";
    const csv = () => {
      const rows = [["date", keyName, "count"], ...body.records.map((r) => [r.date, r[keyName], r.count])];
      // Identifiers and channel names cannot hold commas or quotes, but quote anyway so the file is always valid.
      download(`imagecloud-stats-${compact(a)}-${compact(b)}.csv`, rows.map((row) => row.map((v) => `"${String(v).replaceAll('"', '""')}"`).join(",")).join("\r\n") + "\r\n");
    };
    replace(out,
      h("div", { class: "toolbar" },
        h("p", { id: "stats-total" }, h("strong", {}, formatNumber(total)), ` match${total === 1 ? "" : "es"} for ${scopeText}, ${a} to ${b}`),
        h("button", { type: "button", class: "secondary", id: "csv", onclick: csv }, "Export CSV")),
      withSearches ? h("p", { id: "stats-searches", class: missTotal > searchTotal / 2 ? "notice warn" : "muted" },
        `${formatNumber(searchTotal)} search${searchTotal === 1 ? "" : "es"}, ${formatNumber(missTotal)} found nothing`,
        missTotal > searchTotal / 2 ? " — most photos are not being recognised: check the prints and the channel the app searches." : ".") : null,
      chart(series, withSearches),
      withSearches ? legend() : null,
      perKey.size ? h("table", { class: "table compact", id: "stats-table" },
        h("thead", {}, h("tr", {}, h("th", {}, keyName === "channel" ? "Channel" : "Target"), h("th", { class: "num" }, "Matches"))),
        h("tbody", {}, [...perKey].sort((x, y) => y[1] - x[1]).map(([k, n]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, formatNumber(n))))))
        : h("p", { class: "muted" }, "No matches in this range yet."));
  }

  replace(view,
    h("div", { class: "page-head" }, h("h1", {}, "Statistics"),
      h("p", { class: "muted" }, "Every FindImage that returns a target counts one match for that day (UTC); every answered FindImage counts one search.")),
    h("section", { class: "card" }, form, h("div", { class: "chips" }, presetButtons)),
    h("section", { class: "card" }, out));
  await load();
}
