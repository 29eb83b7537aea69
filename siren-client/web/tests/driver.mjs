// The browser side of the web client's tests (siren-tests/src/browser.rs runs it): Playwright
// driving Debian's chromium, taking one JSON command per line on stdin and answering one JSON
// line on stdout ({"ok": result} or {"error": text}).
//
//   {"op": "open", "page": "alice"}        a new browser context (its own IndexedDB) at the page
//   {"op": "eval", "page": "alice", "js": "…"}   evaluates an expression there (awaited)
//   {"op": "reload", "page": "alice"}      reloads it (its storage stays), and waits until ready
//   {"op": "outside"}                     requests any page made outside the server's origin
//
// Environment: SIREN_ORIGIN (http://127.0.0.1:port of sirend's web listener, which serves the
// client scripts/build-web.sh built), CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const origin = process.env.SIREN_ORIGIN;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const pages = new Map();
const outside = [];

async function open(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('request', (r) => {
    const url = r.url();
    const wsOrigin = origin.replace(/^http/, 'ws');
    if (!url.startsWith(`${origin}/`) && !url.startsWith(`${wsOrigin}/`)) outside.push(url);
  });
  page.on('console', (m) => process.stderr.write(`[${name} console] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  await page.goto(`${origin}/`);
  await ready(page);
  pages.set(name, page);
}

// Waits until the page's client has loaded.
async function ready(page) {
  await page.waitForSelector('body[data-ready]', { timeout: 30_000 });
  const state = await page.evaluate(() => document.body.dataset.ready);
  if (state !== 'true') {
    throw new Error(`the page did not load: ${await page.textContent('body')}`);
  }
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let answer;
  try {
    const cmd = JSON.parse(line);
    let result = null;
    if (cmd.op === 'open') {
      await open(cmd.page);
    } else if (cmd.op === 'eval') {
      result = await page(cmd.page).evaluate(cmd.js);
    } else if (cmd.op === 'reload') {
      await page(cmd.page).reload();
      await ready(page(cmd.page));
    } else if (cmd.op === 'outside') {
      result = outside;
    } else {
      throw new Error(`unknown op ${cmd.op}`);
    }
    answer = { ok: result ?? null };
  } catch (e) {
    answer = { error: String(e?.stack ?? e) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await browser.close();
