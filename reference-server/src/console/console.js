// The console's script: sends a form's or button's change to the admin API with the
// session's CSRF token, shows a new secret once, and switches light and dark.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    document.cookie = `console_theme=${theme}; Path=/console; Max-Age=31536000; SameSite=Strict`;
  }

  // The first visit follows the system's preference (the charts are drawn on the server
  // in the theme of the cookie).
  if (!document.cookie.split("; ").some((c) => c.startsWith("console_theme="))) {
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    setTheme(dark ? "dark" : "light");
    if (dark && document.querySelector("figure.chart")) location.reload();
  }

  // The JSON body of a form: empty fields are left out (data-empty="omit") or sent as
  // null (data-empty="null"); other fields are strings.
  function body(form) {
    const object = {};
    for (const field of form.elements) {
      if (!field.name || field.type === "submit") continue;
      const value = field.value.trim();
      if (value === "") {
        if (field.dataset.empty === "omit") continue;
        if (field.dataset.empty === "null") { object[field.name] = null; continue; }
      }
      object[field.name] = value;
    }
    return object;
  }

  function showSecret(key) {
    const dialog = document.createElement("dialog");
    dialog.setAttribute("aria-labelledby", "secret-title");
    dialog.innerHTML =
      '<h2 id="secret-title">The new key — shown only this once</h2>' +
      '<p>Copy it now; only its prefix is kept.</p><code id="secret-key"></code>' +
      '<p><button type="button" data-copy>Copy</button> <button type="button" data-close>Done</button></p>';
    dialog.querySelector("#secret-key").textContent = key;
    dialog.querySelector("[data-copy]").addEventListener("click", () => navigator.clipboard?.writeText(key));
    dialog.querySelector("[data-close]").addEventListener("click", () => { dialog.close(); location.reload(); });
    document.body.append(dialog);
    dialog.showModal();
  }

  async function send(spec, payload, errorBox) {
    const [method, url] = spec.split(" ");
    const headers = { "X-CSRF-Token": csrf() };
    const init = { method, headers, credentials: "same-origin" };
    if (payload !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(url, init);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = answer.detail ?? `${response.status} ${response.statusText}`;
      if (errorBox) errorBox.textContent = message;
      else document.getElementById("flash").textContent = message;
      return;
    }
    if (typeof answer.key === "string") showSecret(answer.key);
    else location.reload();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.dataset.api) return;
    event.preventDefault();
    send(form.dataset.api, body(form), form.querySelector(".error"));
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-api]");
    if (button) {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      send(button.dataset.api, button.dataset.body ? JSON.parse(button.dataset.body) : undefined);
      return;
    }
    if (event.target.closest("[data-theme-toggle]")) {
      setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
      location.reload();
    }
  });
})();
