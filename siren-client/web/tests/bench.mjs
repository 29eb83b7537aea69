// The browser side of `siren-bench --only web` (siren-bench/src/web.rs runs it): Playwright
// driving Debian's chromium against a running sirend's web listener. Prints one JSON object:
// {"load_ms": [...], "rtt_ms": [...]}.
//
//   load_ms: from navigation to the client ready (wasm compiled, /siren.json read), each in a
//            fresh browser context (nothing cached);
//   rtt_ms:  alice's page sends "ping i" to bob's, whose page answers "pong i" as soon as its
//            snapshot shows it; from alice's send to alice's snapshot showing the answer.
//
// Environment: SIREN_ORIGIN, SIREN_PASSWORD (alice's and bob's), ROUNDS, CHROMIUM.
import { chromium } from 'playwright-core';

const origin = process.env.SIREN_ORIGIN;
const password = process.env.SIREN_PASSWORD;
const rounds = Number(process.env.ROUNDS ?? 20);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});

async function fresh() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e}\n`));
  const started = Date.now();
  await page.goto(`${origin}/`);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  return { page, ms: Date.now() - started };
}

const load_ms = [];
for (let i = 0; i < 5; i++) {
  const { page, ms } = await fresh();
  load_ms.push(ms);
  await page.context().close();
}

async function signIn(account) {
  const { page } = await fresh();
  await page.fill('input[name=account]', account);
  await page.fill('input[name=password]', password);
  await page.fill('input[name=passphrase]', 'bench passphrase');
  await page.fill('input[name=again]', 'bench passphrase');
  await page.click('form.card button[type=submit]');
  await page.waitForSelector('.connection[data-status=online]', { timeout: 60_000 });
  return page;
}
const alice = await signIn('alice');
const bob = await signIn('bob');
const me = (page) => page.evaluate(() => siren.state.snapshot.me);
const [aliceUid, bobUid] = [await me(alice), await me(bob)];
await alice.evaluate((peer) => siren.state.session.acceptContact(peer), bobUid);
await bob.evaluate((peer) => siren.state.session.acceptContact(peer), aliceUid);

// bob answers each ping as soon as his page shows it.
await bob.evaluate((peer) => {
  const answered = new Set();
  window.siren.onSnapshot = (s) => {
    for (const m of s.messages[peer] ?? []) {
      const text = m.body.kind === 'text' ? m.body.text : '';
      if (!m.outgoing && text.startsWith('ping ') && !answered.has(text)) {
        answered.add(text);
        siren.state.session.sendText(peer, `pong ${text.slice(5)}`);
      }
    }
  };
}, aliceUid);

const rtt_ms = await alice.evaluate(async ({ peer, rounds }) => {
  const times = [];
  for (let i = 0; i < rounds; i++) {
    const answer = `pong ${i}`;
    const started = performance.now();
    await new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no answer to ping ${i}`)), 30_000);
      window.siren.onSnapshot = (s) => {
        if ((s.messages[peer] ?? []).some((m) => !m.outgoing && m.body.kind === 'text' && m.body.text === answer)) {
          clearTimeout(timer);
          done();
        }
      };
      siren.state.session.sendText(peer, `ping ${i}`);
    });
    times.push(performance.now() - started);
  }
  return times;
}, { peer: bobUid, rounds });

await browser.close();
process.stdout.write(`${JSON.stringify({ load_ms, rtt_ms })}\n`);
