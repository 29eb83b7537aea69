// Loads the session code (wasm) and hands it to the page. The chat screens come next; until
// then the page exposes `window.siren.Session` (what the browser tests drive).
import init, { Session } from './siren_web.js';

const status = document.getElementById('status');
try {
  await init();
  window.siren = { Session };
  status.textContent = 'Ready.';
  document.body.dataset.ready = 'true';
} catch (e) {
  status.textContent = `The client failed to load: ${e}`;
  document.body.dataset.ready = 'failed';
}
