// The browser side of the web client's tests (siren-tests/src/browser.rs runs it): Playwright
// driving Debian's chromium, taking one JSON command per line on stdin and answering one JSON
// line on stdout ({"ok": result} or {"error": text}).
//
//   {"op": "open", "page": "alice"}        a new browser context (its own IndexedDB) at the page
//   {"op": "eval", "page": "alice", "js": "…"}   evaluates an expression there (awaited)
//   {"op": "reload", "page": "alice"}      reloads it (its storage stays), and waits until ready
//   {"op": "fill", "page", "selector", "value"}   types into a field (replacing its value)
//   {"op": "click", "page", "selector"}    clicks an element
//   {"op": "press", "page", "selector", "key"}    presses a key in an element
//   {"op": "wait", "page", "selector"}     waits (60 s at most) until an element is visible
//   {"op": "text", "page", "selector"}     the text of every matching element
//   {"op": "upload", "page", "selector", "name", "data"}  picks a file (data: base64) in an input
//   {"op": "download", "page", "selector", "path"}  clicks, and saves the download it starts
//   {"op": "screenshot", "page", "path"}   saves a PNG of the page
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
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  page.on('request', (r) => {
    const url = r.url();
    const wsOrigin = origin.replace(/^http/, 'ws');
    if (!url.startsWith(`${origin}/`) && !url.startsWith(`${wsOrigin}/`)) outside.push(url);
  });
  page.on('console', (m) => process.stderr.write(`[${name} console] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  // The page asks before destructive steps (revoke, log out): the tests' person says yes.
  page.on('dialog', (d) => d.accept());
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
    } else if (cmd.op === 'fill') {
      await page(cmd.page).fill(cmd.selector, cmd.value);
    } else if (cmd.op === 'click') {
      await page(cmd.page).click(cmd.selector);
    } else if (cmd.op === 'press') {
      await page(cmd.page).press(cmd.selector, cmd.key);
    } else if (cmd.op === 'wait') {
      await page(cmd.page).waitForSelector(cmd.selector, { timeout: 60_000 });
    } else if (cmd.op === 'text') {
      result = await page(cmd.page).locator(cmd.selector).allTextContents();
    } else if (cmd.op === 'upload') {
      await page(cmd.page).setInputFiles(cmd.selector, {
        name: cmd.name,
        mimeType: 'application/octet-stream',
        buffer: Buffer.from(cmd.data, 'base64'),
      });
    } else if (cmd.op === 'download') {
      const p = page(cmd.page);
      const [download] = await Promise.all([p.waitForEvent('download', { timeout: 60_000 }), p.click(cmd.selector)]);
      await download.saveAs(cmd.path);
      result = download.suggestedFilename();
    } else if (cmd.op === 'screenshot') {
      await page(cmd.page).screenshot({ path: cmd.path });
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
