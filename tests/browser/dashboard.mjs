// The dashboard in a real browser (Debian's chromium, headless, through
// playwright-core), run by tests/dashboard.rs while a campaign sends:
//
//   node dashboard.mjs   (settings in the environment, below)
//
// Signs in with the operator token, goes to Schedules, clicks the campaign,
// watches the sent count change, pauses (the count stops), resumes (it goes
// on), waits for the final values, saves screenshots of the campaign page
// and the queue view, checks the layout at 1280 px and at a phone's 390 px,
// and that a read-only token sees no buttons. Prints one JSON line per step
// and, last, `{"final": {...}}` with what the page showed at the end; the
// Rust test compares it with the store. Exit 1 on the first failed check.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("DASH_URL");
const OPERATOR = env("DASH_OPERATOR_TOKEN");
const READER = env("DASH_READER_TOKEN");
const CAMPAIGN = env("DASH_CAMPAIGN_NAME");
const ARTIFACTS = env("DASH_ARTIFACTS");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const FINAL_TIMEOUT_MS = Number(env("DASH_FINAL_TIMEOUT_MS", "180000"));

mkdirSync(ARTIFACTS, { recursive: true });
const log = (step, data) => console.log(JSON.stringify({ step, ...data }));
const sleep = ms => new Promise(r => setTimeout(r, ms));
function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

async function number(page, id) {
  const t = (await page.locator("#" + id).textContent()) ?? "";
  const n = Number(t.replace(/[^0-9]/g, ""));
  return t.trim() === "—" || t.trim() === "" ? null : n;
}

async function waitFor(what, timeoutMs, fn) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    last = await fn();
    if (last) return last;
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
}

async function noHorizontalScroll(page, what) {
  const { sw, iw } = await page.evaluate(() => ({
    sw: document.documentElement.scrollWidth,
    iw: window.innerWidth,
  }));
  check(sw <= iw + 1, `${what}: the page is ${sw} px wide in a ${iw} px window`);
}

async function signIn(page, token) {
  await page.goto(BASE + "/dashboard");
  await page.locator("#token").fill(token);
  await page.locator("#signin-button").press("Enter");
  await page.locator("#schedules-table").waitFor({ timeout: 15000 });
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // As root, without a sandbox; no background connections (this machine's
  // network is closed, and the test needs none).
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", e => errors.push(String(e)));
  page.on("console", m => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", r => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

  // Sign in, Schedules, click the campaign.
  await signIn(page, OPERATOR);
  const link = page.locator("#schedules-table a.campaign-link", { hasText: CAMPAIGN });
  await link.waitFor({ timeout: 15000 });
  await noHorizontalScroll(page, "schedules at 1280 px");
  await link.click();
  await page.locator("#stat-sent").waitFor({ timeout: 20000 });
  log("campaign page", { url: page.url() });

  // The numbers change without a reload.
  const first = await waitFor("a first message sent", 30000, async () => {
    const n = await number(page, "stat-sent");
    return n > 0 ? n : null;
  });
  const later = await waitFor("the sent count to move", 15000, async () => {
    const n = await number(page, "stat-sent");
    return n > first ? n : null;
  });
  log("changing", { first, later });

  // Pause: the count stops. Batches already permitted finish, so let it
  // settle, then watch it stand still.
  const pause = page.locator("#pause");
  check((await pause.evaluate(el => el.tagName)) === "BUTTON", "pause is a <button>");
  // Keyboard reachable: Tab from the top reaches it.
  await page.locator("#skip").focus();
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate(() => document.activeElement && document.activeElement.id === "pause");
  }
  check(reached, "the pause button is reachable with Tab");
  await page.keyboard.press("Enter");
  await waitFor("the page to show the list paused", 10000, async () =>
    ((await page.locator("#campaign-meta").textContent()) ?? "").includes("paused"));
  await sleep(3000);
  const paused1 = await number(page, "stat-sent");
  await sleep(4000);
  const paused2 = await number(page, "stat-sent");
  log("paused", { paused1, paused2 });
  check(paused1 === paused2, `the sent count moved while paused: ${paused1} -> ${paused2}`);
  const queuedShown = await number(page, "stat-queued");
  check(paused2 < queuedShown, `paused only after everything was sent (${paused2} of ${queuedShown}): slow the campaign down`);

  // Resume: the count goes on.
  await page.locator("#resume").click();
  const resumed = await waitFor("the sent count to move after resume", 20000, async () => {
    const n = await number(page, "stat-sent");
    return n > paused2 ? n : null;
  });
  log("resumed", { resumed });

  // The queue view while it sends: depth, and a current rate from the
  // daemons' leases.
  await page.locator("nav a[data-view=queue]").click();
  await page.locator("#queue-table").waitFor({ timeout: 10000 });
  const live = await waitFor("the queue view's current rate while sending", 20000, async () => {
    const cells = await page.locator("#queue-table tbody tr").first().locator("td").allInnerTexts();
    const n = i => Number((((cells[i] ?? "").match(/[0-9][0-9,]*/) || ["NaN"])[0]).replace(/,/g, ""));
    const depth = n(3), rate = n(5);
    return depth > 0 && rate > 0 ? { depth, rate } : null;
  });
  log("queue while sending", live);
  await noHorizontalScroll(page, "queue at 1280 px");
  await page.screenshot({ path: join(ARTIFACTS, "queue.png"), fullPage: true });
  await page.locator("nav a[data-view=schedules]").click();
  await page.locator("#schedules-table a.campaign-link", { hasText: CAMPAIGN }).click();
  await page.locator("#stat-sent").waitFor({ timeout: 10000 });

  // The final values: everything queued is sent or failed, every report in.
  const final = await waitFor("the final values", FINAL_TIMEOUT_MS, async () => {
    const queued = await number(page, "stat-queued");
    const sent = await number(page, "stat-sent");
    const failed = await number(page, "stat-failed");
    const delivered = await number(page, "stat-delivered");
    const done = queued > 0 && sent + failed === queued && delivered === sent;
    return done ? { queued, sent, failed, delivered } : null;
  });
  await sleep(5500); // one slow refresh: failures by reason, skipped
  final.clicked = await number(page, "stat-clicked");
  final.eta = (await page.locator("#eta").textContent())?.trim();
  final.send_rate = (await page.locator("#rate-send").textContent())?.trim();
  final.delivery_rate = (await page.locator("#rate-delivery").textContent())?.trim();
  final.failures = (await page.locator("#failures").innerText()).trim();
  final.skipped = (await page.locator("#skipped").innerText()).trim();
  final.progress = (await page.locator("#progress-text").textContent())?.trim();
  check(final.eta === "finished", `time to completion at the end: ${final.eta}`);
  check(await page.locator("#chart-send polyline").count() === 1, "the send-rate chart has a line");
  check(await page.locator("#chart-delivered polyline").count() === 1, "the deliveries chart has a line");
  await noHorizontalScroll(page, "campaign at 1280 px");
  await page.screenshot({ path: join(ARTIFACTS, "campaign.png"), fullPage: true });

  // The queue view and the daemons view.
  await page.locator("nav a[data-view=queue]").click();
  await page.locator("#queue-table").waitFor({ timeout: 10000 });
  const queueText = (await page.locator("#queue-table").innerText()).trim();
  await page.locator("nav a[data-view=daemons]").click();
  await page.locator("#daemons-table").waitFor({ timeout: 10000 });
  const daemonsText = (await page.locator("#daemons-table").innerText()).trim();
  check(daemonsText.includes("ready"), "the daemons view shows this daemon ready");
  await page.screenshot({ path: join(ARTIFACTS, "daemons.png"), fullPage: true });
  log("views", { queue: queueText, daemons: daemonsText });

  // Phone width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const view of ["schedules", "queue", "daemons"]) {
    await page.locator(`nav a[data-view=${view}]`).click();
    await page.locator(`#${view}-table`).waitFor({ timeout: 10000 });
    await noHorizontalScroll(page, `${view} at 390 px`);
  }
  await page.locator("nav a[data-view=schedules]").click();
  await page.locator("#schedules-table a.campaign-link", { hasText: CAMPAIGN }).click();
  await page.locator("#stat-sent").waitFor({ timeout: 10000 });
  await page.locator("#failures-table, #failures p").first().waitFor({ timeout: 10000 });
  await noHorizontalScroll(page, "campaign at 390 px");
  await page.screenshot({ path: join(ARTIFACTS, "campaign-phone.png"), fullPage: true });
  check(errors.length === 0, "no script errors: " + errors.join("; "));

  // A read-only token sees the same numbers and no buttons at all.
  const ro = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const rpage = await ro.newPage();
  await signIn(rpage, READER);
  await rpage.locator("#schedules-table a.campaign-link", { hasText: CAMPAIGN }).click();
  await rpage.locator("#stat-sent").waitFor({ timeout: 10000 });
  await waitFor("the read-only page's numbers", 10000, async () => (await number(rpage, "stat-sent")) === final.sent);
  await sleep(1500);
  // Visible anywhere, or in the view at all (the sign-in form's button is
  // hidden once signed in).
  const buttons = async () => (await rpage.locator("button:visible").count()) + (await rpage.locator("#view button").count());
  const roButtons = await buttons();
  const who = (await rpage.locator("#who").textContent()) ?? "";
  await rpage.locator("nav a[data-view=queue]").click();
  await rpage.locator("#queue-table").waitFor({ timeout: 10000 });
  await sleep(2500);
  const roQueueButtons = await buttons();
  log("read-only", { buttons: roButtons, queue_buttons: roQueueButtons, who });
  check(who.startsWith("Read-only"), "signed in read-only");
  check(roButtons === 0 && roQueueButtons === 0, `a read-only token sees ${roButtons} + ${roQueueButtons} buttons`);

  console.log(JSON.stringify({ final }));
} catch (e) {
  failed = true;
  console.error(String(e && e.stack ? e.stack : e));
  try {
    const pages = browser.contexts().flatMap(c => c.pages());
    if (pages[0]) await pages[0].screenshot({ path: join(ARTIFACTS, "failure.png"), fullPage: true });
  } catch (_) { /* the screenshot is a help, not a check */ }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
