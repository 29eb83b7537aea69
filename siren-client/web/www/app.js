// The Siren page. The session code (keys, sealing, the chat's rules) is Rust compiled to wasm
// (siren_web.js); this file only draws what it publishes and passes on what the person does.
//
// Screens: create this browser's device (account, password, a passphrase for what it keeps
// here) or unlock it (passphrase); log in, with the approval code when another device of the
// account must approve this one; then the chat — conversations with unread counts and
// presence, the open conversation with states, receipts, typing and files, contact requests,
// blocking, safety numbers with a verified mark, key-change warnings, new devices to approve;
// groups (a conversation whose `peer` is `#` and the group's id) with each message's sender and
// the membership changes told in the conversation.
//
// Everything from elsewhere (names, texts, file names) goes into the document as text, never
// as markup. `window.siren` exposes the session to the browser tests.
import init, { Session } from './siren_web.js';

const app = document.getElementById('app');
const state = {
  session: null,
  snapshot: null,
  open: null, // the open conversation's peer
  showSafety: false,
  approval: null, // {code} or {code, fingerprint} while this browser is being approved
  notified: new Set(), // ids of messages already notified
  drafts: new Map(),
  typingTimer: null,
};
window.siren = { Session, state, updates: [] };

// --- building the document -------------------------------------------------------------------

// h('div.class', {attr: v, onclick: f}, child, 'text', …): an element; strings become text nodes.
function h(tag, props, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  app.replaceChildren(...nodes);
}

function form(onsubmit, ...children) {
  return h('form.card', {
    onsubmit: async (e) => {
      e.preventDefault();
      const f = e.currentTarget;
      const error = f.querySelector('.error');
      const buttons = f.querySelectorAll('button');
      buttons.forEach((b) => (b.disabled = true));
      if (error) error.textContent = '';
      try {
        await onsubmit(Object.fromEntries(new FormData(f)));
      } catch (err) {
        if (error) error.textContent = String(err?.message ?? err);
      } finally {
        buttons.forEach((b) => (b.disabled = false));
      }
    },
  }, ...children, h('p.error', { role: 'alert' }));
}

// A group's conversation is named `#<group id>`; a user's, by the user's id.
const isGroup = (peer) => peer.startsWith('#');
const chatName = (c) => isGroup(c.peer) ? `# ${c.name ?? 'group'}` : c.name ? `${c.name} (${c.peer})` : c.peer;

const field = (label, name, type = 'text', extra = {}) =>
  h('label', {}, label, h('input', { name, type, required: true, ...extra }));

// --- before the chat ------------------------------------------------------------------------

function onUpdate(update) {
  window.siren.updates.push(update);
  switch (update.type) {
    case 'snapshot':
      state.snapshot = update;
      window.siren.onSnapshot?.(update); // the bench's hook
      if (state.loggingOut && update.devices.length && !update.devices.some((d) => d.this)) {
        forget(true);
        return;
      }
      notify(update);
      render();
      break;
    case 'file':
      download(update.name, update.data);
      break;
    case 'approval-code':
      state.approval = { code: update.code };
      renderApproval();
      break;
    case 'confirm-approval':
      state.approval = { code: update.code, fingerprint: update.fingerprint };
      renderApproval();
      break;
    case 'ended':
      state.ended = update.reason;
      // Logging out revokes this device: once its session is over, nothing of it stays here.
      if (state.loggingOut) forget(true);
      else render();
      break;
  }
}

function createScreen(info) {
  show(form(async ({ account, password, device, passphrase, again }) => {
    if (passphrase !== again) throw new Error('the two passphrases differ');
    const uid = account.includes('@') ? account : `${account}@${info.server}`;
    const session = await Session.create(siren.websocket, uid, info.key, passphrase, onUpdate);
    state.session = session;
    window.siren.session = session;
    try {
      await login(password, device);
    } catch (e) {
      // The device is made: sign in again from the login screen.
      loginScreen(device, e);
    }
  },
  h('h1', {}, 'Siren'),
  h('p.hint', {}, `Sign in to ${info.server}. Your keys are made here, in this browser.`),
  field('Account', 'account', 'text', { autocomplete: 'username', placeholder: `alice or alice@${info.server}` }),
  field('Password', 'password', 'password', { autocomplete: 'current-password' }),
  field('Name of this device', 'device', 'text', { value: browserName() }),
  field('Passphrase for this browser', 'passphrase', 'password', { autocomplete: 'new-password' }),
  field('The passphrase again', 'again', 'password', { autocomplete: 'new-password' }),
  h('p.hint', {}, 'The passphrase seals your keys and messages in this browser; it never leaves it.'),
  h('button.primary', { type: 'submit' }, 'Sign in')));
}

function unlockScreen() {
  show(form(async ({ passphrase }) => {
    const session = await Session.unlock(siren.websocket, passphrase, onUpdate);
    state.session = session;
    window.siren.session = session;
    if (!session.loggedIn) loginScreen(browserName());
  },
  h('h1', {}, 'Siren'),
  h('p.hint', {}, 'This browser holds a Siren device. Unlock it with its passphrase.'),
  field('Passphrase', 'passphrase', 'password', { autocomplete: 'current-password', autofocus: true }),
  h('button.primary', { type: 'submit' }, 'Unlock'),
  h('button.danger', { type: 'button', onclick: () => forget() }, 'Remove this device from this browser')));
}

function loginScreen(device, error) {
  show(form(async ({ password }) => {
    try {
      await login(password, device);
    } catch (e) {
      loginScreen(device, e);
    }
  },
  h('h1', {}, `Sign in as ${state.session.uid}`),
  field('Password', 'password', 'password', { autocomplete: 'current-password' }),
  h('button.primary', { type: 'submit' }, 'Sign in')));
  if (error) app.querySelector('.error').textContent = String(error?.message ?? error);
}

async function login(password, device) {
  try {
    await state.session.login(password, device || null);
  } finally {
    state.approval = null;
  }
  askNotifications();
  if (state.snapshot) render();
  else show(h('p.centered', {}, 'Connecting…'));
}

// A new browser of an existing account: show the code; when the key arrives, ask.
function renderApproval() {
  const a = state.approval;
  if (!a) return;
  if (!a.fingerprint) {
    show(h('div.card', { dataset: { screen: 'approval' } },
      h('h1', {}, 'Approve this browser'),
      h('p', {}, 'On one of your other devices, approve the new device. Its code must be:'),
      h('p.code', { dataset: { code: a.code } }, a.code)));
    return;
  }
  show(h('div.card', { dataset: { screen: 'confirm-approval' } },
    h('h1', {}, 'Did you approve it?'),
    h('p', {}, `Did you approve code ${a.code} on one of your other devices?`),
    h('p.hint', {}, `Signing key ${a.fingerprint}: your other devices show the same.`),
    h('p.hint', {}, 'If you did not, someone else did: answer No, and do not trust this server.'),
    h('button.primary', { onclick: () => state.session.confirmApproval(true) }, 'Yes, I approved it'),
    h('button.danger', { onclick: () => state.session.confirmApproval(false) }, 'No')));
}

async function forget(confirmed = false) {
  if (!confirmed && !confirm('Remove this browser\'s device? Its keys and messages here are deleted.')) return;
  state.session?.quit();
  await new Promise((ok, fail) => {
    const r = indexedDB.deleteDatabase('siren');
    r.onsuccess = ok;
    r.onerror = () => fail(r.error);
    r.onblocked = ok;
  });
  location.reload();
}

function browserName() {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? 'Firefox' : /Edg\//.test(ua) ? 'Edge' : /Chrom/.test(ua) ? 'Chromium' : 'Browser';
  return `${browser} on ${navigator.platform || 'the web'}`;
}

// --- the chat -------------------------------------------------------------------------------

function render() {
  const s = state.snapshot;
  if (!s) return;
  // Keep what the person is typing across redraws.
  const compose = app.querySelector('.compose textarea');
  if (compose && state.open) state.drafts.set(state.open, compose.value);
  const focused = document.activeElement?.name;
  const list = app.querySelector('.messages');
  const atBottom = !list || list.scrollHeight - list.scrollTop - list.clientHeight < 40;

  show(h(`div.chat${state.open ? '.reading' : ''}`, { dataset: { screen: 'chat' } }, side(s), pane(s)));

  const again = app.querySelector('.messages');
  if (again && atBottom) again.scrollTop = again.scrollHeight;
  if (focused) app.querySelector(`[name="${focused}"]`)?.focus();
}

function side(s) {
  const status = s.status.state;
  return h('aside.side', {},
    h('header', {},
      h('div.me', {}, s.me),
      h(`div.connection${status === 'offline' ? '.offline' : ''}`, { dataset: { status } },
        status === 'online' ? 'Connected' : status === 'connecting' ? 'Connecting…'
          : `Offline: ${s.status.why}; retrying in ${s.status.retryIn} s`),
      state.ended ? h('div.notice.problem', {}, `The session ended: ${state.ended}`) : null),
    h('form', {
      onsubmit: (e) => {
        e.preventDefault();
        const input = e.currentTarget.elements.peer;
        const value = input.value.trim();
        if (!value) return;
        const server = s.me.split('@')[1];
        openConversation(value.includes('@') ? value : `${value}@${server}`);
        input.value = '';
      },
    }, h('input', { name: 'peer', placeholder: 'Start a conversation: bob or bob@server', 'aria-label': 'New conversation' }),
    h('button', { type: 'submit' }, 'Open')),
    ...s.approvals.map(approvalNotice),
    ...s.requests.map(requestNotice),
    ...s.banners.slice(-3).map((b) => h(`div.notice.${b.kind === 'key-changed' ? 'warning' : b.kind}`, { dataset: { banner: b.kind } }, b.text)),
    h('div.list', { role: 'list' }, s.conversations.map((c) => h(`button.conversation${c.peer === state.open ? '.open' : ''}`, {
      role: 'listitem',
      dataset: { peer: c.peer },
      onclick: () => openConversation(c.peer),
    },
    c.group ? h('span.dot.group', { title: 'a group' })
      : h(`span.dot.${c.presence ?? 'unknown'}`, { title: c.presence ?? 'presence not shared' }),
    h('span.peer', {}, chatName(c),
      c.verified ? h('span.verified', { title: 'safety number verified' }, ' ✔') : null,
      c.keyChanged ? h('span.warning', { title: 'keys changed' }, ' ⚠') : null,
      c.blocked ? h('span.warning', {}, ' (blocked)') : null),
    c.unread ? h('span.unread', { dataset: { unread: c.unread } }, String(c.unread)) : h('span'),
    h('span.preview', {}, c.typing ? 'typing…' : c.preview ?? '')))),
    h('footer', {},
      h('button', { onclick: () => { state.open = null; state.showDevices = true; render(); } }, 'Devices'),
      h('button', { onclick: () => { state.session.quit(); location.reload(); } }, 'Lock'),
      h('button.danger', { onclick: logOut }, 'Log out')));
}

function approvalNotice(a) {
  return h('div.notice', { dataset: { approval: a.device } },
    h('div', {}, `A new device wants to join your account: ${a.name ?? a.fingerprint}`),
    a.code ? [h('div', {}, 'Approve it only if it shows this code:'), h('div.code', {}, a.code)]
      : h('div.hint', {}, 'Waiting for its code…'),
    h('div.actions', {},
      h('button.primary', { disabled: !a.code, onclick: () => state.session.answerApproval(a.device, true) }, 'Approve'),
      h('button.danger', { onclick: () => state.session.answerApproval(a.device, false) }, 'Deny')));
}

function requestNotice(uid) {
  return h('div.notice.info', { dataset: { request: uid } },
    h('div', {}, `${uid} wants to talk to you.`),
    h('div.actions', {},
      h('button.primary', { onclick: () => state.session.acceptContact(uid) }, 'Accept'),
      h('button', { onclick: () => openConversation(uid) }, 'Read'),
      h('button.danger', { onclick: () => state.session.block(uid) }, 'Block')));
}

function openConversation(peer) {
  state.open = peer;
  state.showDevices = false;
  state.showSafety = false;
  state.session.open(peer);
  state.session.markRead(peer);
  render();
}

// Log out: this device is revoked on the server (its keys are worthless from then on), then
// everything it kept here is deleted.
function logOut() {
  const me = state.snapshot?.devices.find((d) => d.this);
  if (!confirm('Log out? This device is revoked, and its keys and messages here are deleted.')) return;
  if (!me || state.snapshot.status.state !== 'online') {
    forget(true);
    return;
  }
  state.loggingOut = true;
  state.session.revoke(me.device);
}

function devices(s) {
  return h('section.pane', { dataset: { screen: 'devices' } },
    h('header', {},
      h('button', { onclick: () => { state.showDevices = false; render(); }, 'aria-label': 'Back' }, '←'),
      h('span.title', {}, 'Your devices')),
    h('div.messages', { role: 'list' },
      s.devices.length === 0 ? h('p.empty', {}, 'Connect to list your devices.') : null,
      s.devices.map((d) => h('div.notice.info', { role: 'listitem', dataset: { device: d.device } },
        h('div', {}, h('strong', {}, d.name ?? 'a device without a name'), d.this ? ' (this browser)' : ''),
        h('div.hint', {}, `${d.fingerprint} · added ${new Date(d.added * 1000).toLocaleDateString()}`),
        d.this ? null : h('div.actions', {},
          h('button.danger', {
            onclick: () => {
              if (confirm(`Revoke ${d.name ?? d.fingerprint}? It can no longer read or send.`)) state.session.revoke(d.device);
            },
          }, 'Revoke'))))));
}

function pane(s) {
  if (state.showDevices && !state.open) return devices(s);
  const peer = state.open;
  if (!peer) return h('section.pane', {}, h('p.empty', {}, 'Choose a conversation, or start one.'));
  const c = s.conversations.find((x) => x.peer === peer) ?? { peer };
  const messages = s.messages[peer] ?? [];
  if (isGroup(peer)) return groupPane(c, messages);
  return h('section.pane', { dataset: { conversation: peer } },
    h('header', {},
      h('button', { onclick: () => { state.open = null; render(); }, 'aria-label': 'Back' }, '←'),
      h('span.title', {}, c.name ? `${c.name} (${peer})` : peer,
        c.presence ? h('span.hint', {}, ` · ${c.presence}`) : null,
        c.verified ? h('span.verified', {}, ' ✔ verified') : null),
      h('button', { onclick: () => { state.showSafety = !state.showSafety; render(); } }, 'Safety number'),
      c.blocked
        ? h('button', { onclick: () => state.session.unblock(peer) }, 'Unblock')
        : h('button.danger', { onclick: () => state.session.block(peer) }, 'Block')),
    c.keyChanged ? h('div.notice', { dataset: { warning: 'key-changed' } },
      `${peer}'s keys changed since you last talked. Compare your safety number again before trusting new messages.`) : null,
    state.showSafety ? safety(c) : null,
    h('div.messages', { role: 'log' },
      messages.length >= 50 ? h('button', { onclick: () => state.session.loadOlder(peer) }, 'Older messages') : null,
      messages.map((m) => message(peer, m))),
    h('div.typing', {}, c.typing ? `${peer} is typing…` : ''),
    compose(peer));
}

// A group: who is in it (as the version this device holds says), its messages with their
// senders, and the changes told in line.
function groupPane(c, messages) {
  const peer = c.peer;
  const g = c.group;
  const members = g ? `${g.members.length} member${g.members.length === 1 ? '' : 's'}: ${g.members.join(', ')}` : '';
  return h('section.pane', { dataset: { conversation: peer, group: peer.slice(1) } },
    h('header', {},
      h('button', { onclick: () => { state.open = null; render(); }, 'aria-label': 'Back' }, '←'),
      h('span.title', {}, chatName(c), h('span.hint', { dataset: { members: g?.members.length ?? 0 } }, ` · ${members}`))),
    g && !g.member ? h('div.notice.warning', { dataset: { warning: 'not-a-member' } },
      'You are no longer a member of this group: nothing you write is sent.') : null,
    h('div.messages', { role: 'log' },
      messages.length >= 50 ? h('button', { onclick: () => state.session.loadOlder(peer) }, 'Older messages') : null,
      messages.map((m) => message(peer, m))),
    h('div.typing', {}, ''),
    compose(peer));
}

function safety(c) {
  return h('div.safety', { dataset: { safety: c.peer } },
    c.safetyNumber
      ? [h('div', {}, 'Compare this number with the one on their device, in person or on a call:'),
        h('div.number', {}, c.safetyNumber),
        c.verified ? h('div.verified', {}, '✔ You verified it.')
          : h('button.primary', { onclick: () => state.session.markVerified(c.peer) }, 'They match: mark verified')]
      : h('div', {}, 'Exchange a message first: the safety number needs their keys.'));
}

const STATES = { sending: '…', sent: '✓', delivered: '✓✓', read: '✓✓ read', failed: 'not sent', unread: '', seen: '' };

function message(peer, m) {
  const time = new Date(m.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const meta = [time, m.edited ? 'edited' : null, m.outgoing ? STATES[m.state] : null].filter(Boolean).join(' · ');
  let body;
  switch (m.body.kind) {
    case 'text': body = m.body.text; break;
    case 'deleted': body = 'This message was deleted.'; break;
    case 'unsupported': body = `A ${m.body.type} message this client cannot show.`; break;
    case 'file': body = file(m.body); break;
    case 'event':
      return h('div.event', { dataset: { id: m.id } }, `${time} · ${m.body.text}`);
    default: body = '';
  }
  // In a group, each message says who wrote it.
  const sender = isGroup(peer) && !m.outgoing ? h('span.sender', {}, m.from) : null;
  return h(`div.message${m.outgoing ? '.mine' : ''}${m.state === 'failed' ? '.failed' : ''}${m.body.kind === 'deleted' ? '.deleted' : ''}`,
    { dataset: { id: m.id, state: m.state } },
    sender,
    h('span.body', {}, body),
    h('div.meta', {}, m.state === 'failed' ? `${meta}: ${m.failed}` : meta));
}

function file(f) {
  const size = f.size < 1024 ? `${f.size} B` : f.size < 1048576 ? `${(f.size / 1024).toFixed(1)} KiB` : `${(f.size / 1048576).toFixed(1)} MiB`;
  const progress = {
    sending: `sending ${f.done}/${f.of}`, sent: 'sent', receiving: `receiving ${f.done}/${f.of}`,
    complete: 'received', saved: 'saved', failed: `failed: ${f.failed}`,
  }[f.progress];
  return h('span', { dataset: { file: f.file, progress: f.progress } },
    `File ${f.name} (${size}) — ${progress} `,
    f.progress === 'complete' || f.progress === 'saved'
      ? h('button', { onclick: () => state.session.saveFile(f.file) }, 'Save') : null);
}

function compose(peer) {
  const send = () => {
    const box = app.querySelector('.compose textarea');
    const text = box.value.trim();
    if (!text) return;
    state.session.sendText(peer, text);
    if (!isGroup(peer)) state.session.setTyping(peer, false);
    state.drafts.delete(peer);
    box.value = '';
  };
  const picker = h('input', {
    type: 'file',
    onchange: async (e) => {
      const input = e.currentTarget;
      for (const f of [...input.files]) {
        state.session.sendFile(peer, f.name, new Uint8Array(await f.arrayBuffer()));
      }
      input.value = '';
    },
  });
  return h('form.compose', { onsubmit: (e) => { e.preventDefault(); send(); } },
    h('textarea', {
      name: 'compose',
      placeholder: isGroup(peer) ? 'Message the group' : `Message ${peer}`,
      value: state.drafts.get(peer) ?? '',
      onkeydown: (e) => {
        if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
      },
      oninput: () => {
        if (isGroup(peer)) return; // typing is never told to a group
        state.session.setTyping(peer, true);
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(() => state.session.setTyping(peer, false), 5000);
      },
    }),
    picker,
    h('button', { type: 'button', onclick: () => picker.click(), title: 'Send a file' }, 'File…'),
    h('button.primary', { type: 'submit' }, 'Send'));
}

// --- files and notifications ------------------------------------------------------------------

function download(name, data) {
  const url = URL.createObjectURL(new Blob([data]));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Asked once, after the first login in this browser.
function askNotifications() {
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
}

// A desktop notification for each new incoming message while the tab is hidden.
function notify(s) {
  for (const [peer, msgs] of Object.entries(s.messages)) {
    const c = s.conversations.find((x) => x.peer === peer);
    for (const m of msgs) {
      if (m.outgoing || m.state !== 'unread' || state.notified.has(m.id)) continue;
      state.notified.add(m.id);
      if (document.hidden && 'Notification' in window && Notification.permission === 'granted') {
        const text = m.body.kind === 'text' ? m.body.text : m.body.kind === 'file' ? `a file: ${m.body.name}` : 'a message';
        const title = isGroup(peer) ? `${m.from} in ${chatName(c ?? { peer })}` : peer;
        new Notification(title, { body: text, tag: peer });
      }
    }
  }
  // Read as soon as it is shown in the open conversation.
  if (state.open && !document.hidden && (s.messages[state.open] ?? []).some((m) => m.state === 'unread')) {
    state.session.markRead(state.open);
  }
}
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.open && state.session) state.session.markRead(state.open);
});

// --- start ----------------------------------------------------------------------------------

try {
  const [, info] = await Promise.all([
    init(),
    fetch('siren.json', { cache: 'no-cache' }).then((r) => {
      if (!r.ok) throw new Error(`siren.json: ${r.status}`);
      return r.json();
    }),
  ]);
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  window.siren.server = info;
  window.siren.websocket = new URL(info.websocket, `${scheme}//${location.host}/`).href;
  if (await Session.exists()) unlockScreen();
  else createScreen(info);
  document.body.dataset.ready = 'true';
} catch (e) {
  show(h('p.centered', {}, `The client failed to load: ${e}`));
  document.body.dataset.ready = 'failed';
}
