// The console shell: log-in, navigation and a tiny hash router (#/..., one page module per view).

import { ApiError, call, credentials, saveCredentials } from "./api.js";
import { h, replace } from "./dom.js";
import { channelsPage } from "./channels.js";
import { targetsPage } from "./targets.js";
import { detailPage } from "./detail.js";
import { tryPage } from "./try.js";
import { statsPage } from "./stats.js";
import { integratePage } from "./integrate.js";

const view = document.getElementById("view");

const ROUTES = [
  [/^#?\/?$/, "channels", () => channelsPage(view)],
  [/^#\/channel\/([^/?]+)\/target\/([^/?]+)$/, "channels", (m) => detailPage(view, dec(m[1]), dec(m[2]))],
  [/^#\/channel\/([^/?]+)(?:\?(.*))?$/, "channels", (m) => targetsPage(view, dec(m[1]), new URLSearchParams(m[2] || ""))],
  [/^#\/try(?:\?(.*))?$/, "try", (m) => tryPage(view, new URLSearchParams(m[1] || ""))],
  [/^#\/stats(?:\?(.*))?$/, "stats", (m) => statsPage(view, new URLSearchParams(m[1] || ""))],
  [/^#\/integrate$/, "integrate", () => integratePage(view)],
];

function dec(part) {
  return decodeURIComponent(part);
}

function showSignedIn(user) {
  document.getElementById("nav").hidden = !user;
  document.getElementById("who").hidden = !user;
  document.getElementById("who-name").textContent = user ? user.username : "";
}

function loginPage() {
  showSignedIn(null);
  const error = h("p", { class: "notice error", role: "alert", hidden: true });
  const username = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true });
  const secretkey = h("input", { id: "login-secretkey", name: "secretkey", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary", id: "login-submit" }, "Log in");
  const form = h("form", { class: "card login", id: "login-form" },
    h("h1", {}, "Log in to imagecloud"),
    h("p", { class: "muted" }, "Use the username and secret key your operator gave you (", h("code", {}, "imagecloud user create"), ")."),
    h("label", {}, "Username", username),
    h("label", {}, "Secret key", secretkey),
    error,
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    const auth = { username: username.value.trim(), secretkey: secretkey.value.trim() };
    try {
      await call("ListChannels", {}, { auth });
      saveCredentials(auth);
      route();
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : String(e);
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  replace(view, form);
  username.focus();
}

async function route() {
  const user = credentials();
  if (!user) return loginPage();
  showSignedIn(user);
  const hash = location.hash || "#/";
  for (const [pattern, section, render] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.nav === section);
    }
    try {
      await render(match);
    } catch (e) {
      if (e instanceof ApiError && e.code === 20001) {
        saveCredentials(null);
        return loginPage();
      }
      replace(view, h("p", { class: "notice error", role: "alert" }, e instanceof ApiError ? e.message : String(e)));
    }
    return;
  }
  replace(view, h("p", { class: "notice" }, "No such page. ", h("a", { href: "#/" }, "Back to your channels")));
}

document.getElementById("logout").addEventListener("click", () => {
  saveCredentials(null);
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
route();
