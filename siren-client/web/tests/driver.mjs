// The browser side of the web client's tests (siren-tests/src/browser.rs runs it): Playwright
// driving Debian's chromium, taking one JSON command per line on stdin and answering one JSON
// line on stdout ({"ok": result} or {"error": text}).
//
//   {"op": "open", "page": "alice"}        a new browser context (its own IndexedDB) at the page
//   {"op": "eval", "page": "alice", "js": "…"}   evaluates an expression there (awaited)
//   {"op": "outside"}                     requests any page made outside the server's origin
//
// Environment: SIREN_ORIGIN (http://127.0.0.1:port of sirend's web listener), SIREN_WEB_DIST
// (what scripts/build-web.sh built), CHROMIUM (default /usr/bin/chromium).
//
// Until sirend serves the built client itself, the page's files are answered from
// SIREN_WEB_DIST under /web-test/ on the server's own origin (so the WebSocket's Origin check
// and the same-origin rules are the real ones), with the Content-Security-Policy sirend sends.
import { chromium } from 'playwright-core';
import fs from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';

const origin = process.env.SIREN_ORIGIN;
const dist = process.env.SIREN_WEB_DIST;
const types = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css; charset=utf-8',
};

const served = await fetch(`${origin}/`);
const csp = served.headers.get('content-security-policy');
if (!csp) throw new Error(`${origin}/ sent no Content-Security-Policy`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // A document Playwright answers itself has no address of its own, so Chromium's Local
  // Network Access checks take it for a public page and block its WebSocket to loopback.
  // Served by sirend (next step) the page is on the server's own address; until then, off.
  args: ['--no-sandbox', '--disable-features=LocalNetworkAccessChecks'],
});
const pages = new Map();
const outside = [];

async function open(name) {
  const context = await browser.newContext();
  await context.route(`${origin}/web-test/**`, async (route) => {
    const file = path.basename(new URL(route.request().url()).pathname);
    try {
      const body = await fs.readFile(path.join(dist, file));
      await route.fulfill({
        body,
        headers: {
          'content-type': types[path.extname(file)] ?? 'application/octet-stream',
          'content-security-policy': csp,
        },
      });
    } catch {
      await route.fulfill({ status: 404, body: 'not found' });
    }
  });
  const page = await context.newPage();
  page.on('request', (r) => {
    const url = r.url();
    const wsOrigin = origin.replace(/^http/, 'ws');
    if (!url.startsWith(`${origin}/`) && !url.startsWith(`${wsOrigin}/`)) outside.push(url);
  });
  page.on('console', (m) => process.stderr.write(`[${name} console] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name} page error] ${e}\n`));
  await page.goto(`${origin}/web-test/index.html`);
  await page.waitForSelector('body[data-ready]', { timeout: 30_000 });
  const ready = await page.evaluate(() => document.body.dataset.ready);
  if (ready !== 'true') {
    throw new Error(`the page did not load: ${await page.textContent('body')}`);
  }
  pages.set(name, page);
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
      const page = pages.get(cmd.page);
      if (!page) throw new Error(`no page ${cmd.page}`);
      result = await page.evaluate(cmd.js);
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
