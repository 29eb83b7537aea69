// Loads the session code (wasm) and what the page needs to reach its server: its name and key
// (`/siren.json`, from the server that served this page) and the WebSocket on this origin. The
// chat screens come next; until then the page exposes `window.siren` (what the browser tests
// drive): `Session`, `server` ({server, key}) and `websocket` (the URL).
import init, { Session } from './siren_web.js';

const status = document.getElementById('status');
try {
  const [, info] = await Promise.all([
    init(),
    fetch('siren.json', { cache: 'no-cache' }).then((r) => {
      if (!r.ok) throw new Error(`siren.json: ${r.status}`);
      return r.json();
    }),
  ]);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const websocket = new URL(info.websocket, `${scheme}//${location.host}/`).href;
  window.siren = { Session, server: info, websocket };
  status.textContent = 'Ready.';
  document.body.dataset.ready = 'true';
} catch (e) {
  status.textContent = `The client failed to load: ${e}`;
  document.body.dataset.ready = 'failed';
}
