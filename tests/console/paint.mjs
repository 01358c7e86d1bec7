// Time to first paint of console pages in Debian's Chromium, for the console benchmark
// (tests/benches/console_dashboard.rs). Logs in, loads each page LOADS times (a new
// navigation each time, cache on as for a returning admin) and prints JSON: per page, the
// first contentful paint and the navigation's response end, in milliseconds.
//
//   CONSOLE_ORIGIN, ADMIN_NAME, ADMIN_PASSWORD, PAGES (comma-separated paths), LOADS

import { chromium } from "playwright-core";

const origin = process.env.CONSOLE_ORIGIN;
const pages = process.env.PAGES.split(",");
const loads = Number(process.env.LOADS ?? "20");
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
const page = await context.newPage();
await page.goto(`${origin}/console/login`);
await page.getByLabel("Name", { exact: true }).fill(process.env.ADMIN_NAME);
await page.getByLabel("Password").fill(process.env.ADMIN_PASSWORD);
await Promise.all([page.waitForURL(`${origin}/console/`), page.getByRole("button", { name: "Log in" }).click()]);

const results = {};
for (const path of pages) {
  const samples = [];
  // One load first, not counted: the stylesheet and script are cached after it.
  for (let i = 0; i <= loads; i++) {
    await page.goto(origin + path, { waitUntil: "load" });
    // The paint entry is recorded once the first frame is presented, which may follow load.
    await page.waitForFunction(() => performance.getEntriesByName("first-contentful-paint").length > 0, null, { timeout: 10000 });
    const timing = await page.evaluate(() => {
      const paint = performance.getEntriesByName("first-contentful-paint")[0];
      const navigation = performance.getEntriesByType("navigation")[0];
      return { fcp: paint ? paint.startTime : null, response_end: navigation.responseEnd };
    });
    if (i > 0) samples.push(timing);
  }
  results[path] = samples;
}
await browser.close();
console.log(JSON.stringify(results));
