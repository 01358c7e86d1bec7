// The admin console in a real browser: Debian's Chromium driven by playwright-core.
//
// Started by tests/tests/console_browser.rs, which runs the server, seeds its database and
// checks what this script reports against the database. Everything comes in through the
// environment; the last line printed is a JSON report. Any failed check exits non-zero.
//
//   CONSOLE_ORIGIN   http://127.0.0.1:PORT
//   ADMIN_NAME / ADMIN_PASSWORD, VIEWER_NAME / VIEWER_PASSWORD
//   ADMIN_TOKEN      the bearer admin token (for the API's side of each comparison)
//   MESSAGE_BODY     a Messages request body to send with the key issued in the browser
//   SCREENSHOTS      where the 1280×800 screenshots go
//   CHROMIUM         the browser (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set`);
  return value;
};
const origin = env("CONSOLE_ORIGIN");
const token = env("ADMIN_TOKEN");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const report = { pages: {}, accessibility: {} };
const log = (...args) => console.error("[console test]", ...args);

async function api(path, init = {}) {
  const response = await fetch(origin + path, {
    ...init,
    headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
  });
  assert.equal(response.status, 200, `${path}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

// A new context (its own cookies), with the console's CSP in force.
async function context() {
  return browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
}

async function login(page, name, password) {
  await page.goto(`${origin}/console/login`);
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL(`${origin}/console/`), page.getByRole("button", { name: "Log in" }).click()]);
}

async function screenshot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png` });
  await page.screenshot({ path: `${shots}/${name}-full.png`, fullPage: true });
}

async function metrics(page) {
  return page.$$eval("[data-metric]", (nodes) =>
    Object.fromEntries(nodes.map((node) => [node.dataset.metric, node.textContent.trim()])),
  );
}

async function axe(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern (a
  // script tag would be refused by it, rightly).
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const violations = result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }));
  report.accessibility[name] = violations;
  const critical = violations.filter((v) => v.impact === "critical");
  assert.deepEqual(critical, [], `${name}: critical accessibility violations`);
}

const number = (text) => Number(text.replaceAll(",", "").replace("$", ""));
const dollars = (usd) => `$${usd}`;

// 1. The admin logs in and sees the seeded dashboard; its numbers are the API's.
const adminContext = await context();
const page = await adminContext.newPage();
page.on("dialog", (dialog) => dialog.accept());
await page.goto(`${origin}/console/`);
assert.match(page.url(), /\/console\/login\?next=/, "not logged in: the login page");
await screenshot(page, "login");
await login(page, env("ADMIN_NAME"), env("ADMIN_PASSWORD"));
await page.goto(`${origin}/console/?range=month`);
await screenshot(page, "dashboard");
const dashboard = await metrics(page);
report.dashboard = dashboard;
const apiUsage = {};
for (const provider of ["plan", "bedrock"]) {
  const usage = await api(`/admin/usage?period=month&bucket_type=day&provider=${provider}`);
  apiUsage[provider] = usage;
  assert.equal(dashboard[`${provider}.cost`], dollars(usage.estimated_cost_usd), `${provider} cost`);
  assert.equal(number(dashboard[`${provider}.requests`]), usage.total_requests, `${provider} requests`);
  assert.equal(number(dashboard[`${provider}.total_tokens`]), usage.total_tokens, `${provider} tokens`);
  assert.equal(number(dashboard[`${provider}.input_tokens`]), usage.total_input_tokens);
  assert.equal(number(dashboard[`${provider}.output_tokens`]), usage.total_output_tokens);
  assert.equal(number(dashboard[`${provider}.cache_read_tokens`]), usage.total_cache_read_tokens);
  assert.equal(number(dashboard[`${provider}.cache_write_tokens`]), usage.total_cache_write_tokens);
}
report.api = { plan: apiUsage.plan, bedrock: apiUsage.bedrock };
assert.ok(apiUsage.plan.total_requests > 0 && apiUsage.bedrock.total_requests > 0, "the seed used both providers");
assert.equal(await page.locator("svg").count() >= 6, true, "the charts are drawn");
await axe(page, "dashboard");

// 2. Filtered by user and by provider.
const users = (await api("/admin/users")).users;
const ada = users.find((u) => u.name === "Ada");
assert.ok(ada, "the seeded user Ada");
await page.getByLabel("User", { exact: true }).selectOption(ada.id);
await page.getByLabel("Provider", { exact: true }).selectOption("plan");
await Promise.all([page.waitForURL(/user_id=/), page.getByRole("button", { name: "Show" }).click()]);
const filtered = await metrics(page);
const adaPlan = await api(`/admin/usage?period=month&bucket_type=day&provider=plan&user_id=${ada.id}`);
assert.equal(filtered["plan.cost"], dollars(adaPlan.estimated_cost_usd));
assert.equal(number(filtered["plan.requests"]), adaPlan.total_requests);
assert.equal(filtered["bedrock.cost"], undefined, "provider=plan shows Plan only");
report.filtered = { user_id: ada.id, metrics: filtered, api: adaPlan };
await screenshot(page, "dashboard-filtered");

// 3. Create a user, issue a key (shown once), send a request with it.
await page.goto(`${origin}/console/users`);
await page.getByText("Create a user").click();
await page.getByLabel("Name", { exact: true }).fill("Browser User");
await page.getByLabel("Monthly Bedrock budget").fill("5");
await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: "Create" }).click()]);
await page.waitForSelector("text=Browser User");
await screenshot(page, "users");
await axe(page, "users");
await page.getByRole("link", { name: "Browser User" }).click();
await page.waitForURL(/\/console\/users\/[0-9a-f-]+$/);
const userId = page.url().split("/").pop();
await page.getByLabel("New key's name").fill("from the browser");
await page.getByRole("button", { name: "Issue a key" }).click();
const dialog = page.getByRole("dialog");
await dialog.waitFor();
const key = (await page.locator("#secret-key").textContent()).trim();
assert.match(key, /^ak_/, "the raw key is shown once");
await screenshot(page, "key-issued");
await Promise.all([page.waitForLoadState("load"), dialog.getByRole("button", { name: "Done" }).click()]);
await page.waitForSelector("text=from the browser");
assert.equal(await page.locator(`text=${key}`).count(), 0, "the raw key is not shown again");

const sent = await fetch(`${origin}/ak/${key}/v1/messages`, {
  method: "POST",
  headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
  body: env("MESSAGE_BODY"),
});
assert.equal(sent.status, 200, "the request with the new key");
await sent.text();

// 4. The request in the explorer and on the dashboard, with its exact tokens and cost.
let row;
for (let attempt = 0; attempt < 100 && !row; attempt++) {
  const found = await api(`/admin/requests?user_id=${userId}`);
  row = found.requests[0];
  if (!row) await new Promise((resolve) => setTimeout(resolve, 100));
}
assert.ok(row, "the request was recorded");
await page.goto(`${origin}/console/requests?user_id=${userId}`);
const cells = await page.$$eval(`tr[data-request-id="${row.request_id}"] td[data-field]`, (tds) =>
  Object.fromEntries(tds.map((td) => [td.dataset.field, td.textContent.trim()])),
);
assert.equal(number(cells.input_tokens), row.input_tokens);
assert.equal(number(cells.output_tokens), row.output_tokens);
assert.equal(number(cells.cache_read_tokens), row.cache_read_tokens);
assert.equal(number(cells.cache_write_tokens), row.cache_write_tokens);
assert.ok(cells.cost.startsWith(dollars(row.cost.total_usd)), `${cells.cost} vs ${row.cost.total_usd}`);
await screenshot(page, "requests");
await axe(page, "requests");
await page.goto(`${origin}/console/?range=month&user_id=${userId}`);
const mine = await metrics(page);
assert.equal(number(mine["plan.requests"]), 1);
assert.equal(mine["plan.cost"], dollars(row.cost.total_usd));
assert.equal(number(mine["plan.input_tokens"]), row.input_tokens);
report.request = { user_id: userId, explorer: cells, api: row, dashboard: mine };

// 5. Every other page, in light and dark, checked by axe.
await page.goto(`${origin}/console/users/${userId}`);
await screenshot(page, "user");
await axe(page, "user");
// Model mappings: create one, then change where it goes (the original's CRUD is broken).
await page.goto(`${origin}/console/mappings`);
await page.getByText("Map a model").click();
await page.getByLabel("Claude model (as clients ask for it)").fill("claude-browser-test");
await page.getByLabel("Bedrock model id").first().fill("us.anthropic.claude-browser-v1:0");
await Promise.all([page.waitForLoadState("load"), page.getByRole("button", { name: "Create" }).click()]);
await page.waitForSelector("text=claude-browser-test");
const created = (await api("/admin/model-mappings")).mappings.find((m) => m.claude_model === "claude-browser-test");
assert.ok(created, "the mapping made in the browser");
const edit = page.locator("details.edit").filter({ hasText: "the mapping of claude-browser-test" });
await edit.locator("summary").click();
await edit.getByLabel("Bedrock model id").fill("us.anthropic.claude-browser-v2:0");
await edit.getByLabel("Description").fill("edited in the browser");
await Promise.all([page.waitForLoadState("load"), edit.getByRole("button", { name: "Save" }).click()]);
await page.waitForSelector("text=us.anthropic.claude-browser-v2:0");
const edited = (await api("/admin/model-mappings")).mappings.find((m) => m.id === created.id);
assert.equal(edited.bedrock_model, "us.anthropic.claude-browser-v2:0", "the edit reached the API");
assert.equal(edited.description, "edited in the browser");
report.mapping = edited;
for (const [name, path] of [["mappings", "/console/mappings"], ["prices", "/console/prices"], ["audit", "/console/audit"]]) {
  await page.goto(origin + path);
  await screenshot(page, name);
  await axe(page, name);
}
assert.ok(await page.locator("text=POST /admin/users/{user_id}/keys").count() > 0, "the audit log shows the key issued");
await page.goto(`${origin}/console/?range=month`);
await page.getByRole("button", { name: "Switch light or dark" }).click();
await page.waitForSelector('html[data-theme="dark"]');
await screenshot(page, "dashboard-dark");
await axe(page, "dashboard-dark");

// 6. A viewer reads but cannot change anything.
const viewerContext = await context();
const viewer = await viewerContext.newPage();
await login(viewer, env("VIEWER_NAME"), env("VIEWER_PASSWORD"));
for (const path of ["/console/users", `/console/users/${userId}`, "/console/mappings", "/console/prices"]) {
  await viewer.goto(origin + path);
  assert.equal(await viewer.locator("[data-api]").count(), 0, `${path}: no change offered to a viewer`);
}
const refused = await viewer.evaluate(async () => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const response = await fetch("/admin/users", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify({ name: "made by a viewer" }),
  });
  return response.status;
});
assert.equal(refused, 403, "a viewer's change is refused");
await screenshot(viewer, "viewer-users");

// 7. Logout ends the session: the page, and the cookie it had, no longer work.
const [cookie] = (await adminContext.cookies()).filter((c) => c.name === "proxy_console");
await Promise.all([page.waitForURL(`${origin}/console/login`), page.getByRole("button", { name: "Log out" }).click()]);
await page.goto(`${origin}/console/`);
assert.match(page.url(), /\/console\/login/, "after logout: the login page");
const replay = await fetch(`${origin}/admin/session`, { headers: { cookie: `proxy_console=${cookie.value}` } });
assert.equal(replay.status, 401, "the old cookie is refused");

await browser.close();
console.log(JSON.stringify(report));
