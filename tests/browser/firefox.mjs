// Firefox (Debian's firefox-esr) driven over WebDriver BiDi, the protocol
// Firefox itself serves, for the browser scripts that run in Firefox.
//
// Why not Playwright: playwright-core drives Firefox either through its own
// patched build (a download this machine cannot make) or, for a stock
// Firefox, through BiDi commands newer than Firefox ESR answers
// (`emulation.setMediaFeaturesOverride` is refused as an unknown command
// when a context is created). So this module speaks the few BiDi commands
// the scripts need, over Node's WebSocket (`node --experimental-websocket`
// on Node 20).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fail } from './common.mjs';

const QUIET = {
  // Stay quiet: no updates, telemetry or first-run pages.
  'app.update.disabledForTesting': true,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.reportingpolicy.firstRun': false,
  'browser.startup.homepage_override.mstone': 'ignore',
};

/**
 * Starts `$FIREFOX` (default /usr/bin/firefox-esr) headless on a fresh
 * profile with `prefs` (and `files`, name → text, written into the
 * profile, which is also its HOME), opens a BiDi session with
 * `capabilities`, and resolves to `{ version, send, page, keys, errors,
 * close }`: `send(method, params)` is one BiDi command; `page(fn, ...args)`
 * runs `fn` (given `args`, strings or numbers) in the top page with a user
 * activation and returns its result parsed from the JSON string it
 * returns; `keys(...values)` presses and
 * releases WebDriver key values in turn (headless, the window has no
 * focus: the page's key listeners run, but no default action such as a
 * button's click on Enter or Tab's move); `tap(selector)` clicks the
 * element's centre with the mouse; `errors` collects console errors
 * (those matching `ignore` left out); `close()` ends Firefox and removes
 * the profile.
 */
export async function firefox({ prefs = {}, files = {}, capabilities = {}, ignore = null } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-firefox-'));
  fs.writeFileSync(path.join(profile, 'user.js'),
    Object.entries({ ...QUIET, ...prefs }).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join('\n') + '\n');
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(profile, name), text);
  const proc = spawn(process.env.FIREFOX || '/usr/bin/firefox-esr',
    ['--headless', '--no-remote', '--remote-debugging-port=0', '--profile', profile],
    { stdio: ['ignore', 'ignore', 'pipe'],
      // HOME is the profile: ALSA reads its .asoundrc from there, and
      // Firefox refuses a home owned by another user (root's under sudo).
      env: { ...process.env, HOME: profile, MOZ_CRASHREPORTER_DISABLE: '1' } });
  let ws = null;
  const close = () => {
    try { ws?.close(); } catch { /* closing anyway */ }
    proc.kill();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  try {
    const url = await new Promise((resolve, reject) => {
      let log = '';
      proc.stderr.on('data', (d) => {
        log += d;
        const m = log.match(/WebDriver BiDi listening on (ws:\/\/\S+)/);
        if (m) resolve(m[1]);
      });
      proc.on('exit', (c) => reject(new Error(`firefox exited (${c}): ${log}`)));
      setTimeout(() => reject(new Error(`firefox did not start its BiDi server in 60 s: ${log}`)), 60000);
    });
    ws = new WebSocket(`${url}/session`);
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('BiDi connection failed')); });
  } catch (e) {
    close();
    throw e;
  }
  const errors = [];
  let nextId = 0;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
    if (m.method === 'log.entryAdded' && m.params.level === 'error' && !(ignore && ignore.test(m.params.text))) errors.push(m.params.text);
  };
  const send = (method, params) => new Promise((resolve, reject) => {
    const id = ++nextId;
    waiting.set(id, (m) => (m.type === 'error' ? reject(new Error(`${method}: ${m.error}: ${m.message}`)) : resolve(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });
  const session = await send('session.new', { capabilities: { alwaysMatch: capabilities } });
  await send('session.subscribe', { events: ['log.entryAdded'] });
  const context = (await send('browsingContext.getTree', {})).contexts[0].context;
  const page = async (fn, ...args) => {
    const r = await send('script.callFunction', {
      functionDeclaration: fn.toString(),
      arguments: args.map((a) => (typeof a === 'number' ? { type: 'number', value: a } : { type: 'string', value: String(a) })),
      target: { context },
      awaitPromise: true,
      userActivation: true,
    });
    if (r.type === 'exception') fail(`in the page: ${r.exceptionDetails.text}`);
    return r.result.type === 'string' ? JSON.parse(r.result.value) : null;
  };
  const keys = (...values) => send('input.performActions', {
    context,
    actions: [{ type: 'key', id: 'keyboard', actions: values.flatMap((value) => [{ type: 'keyDown', value }, { type: 'keyUp', value }]) }],
  });
  // A tap (mouse down and up) at the centre of the element `selector`.
  const tap = async (selector) => {
    const r = await page((sel) => {
      const b = document.querySelector(sel).getBoundingClientRect();
      return JSON.stringify({ x: Math.round(b.left + b.width / 2), y: Math.round(b.top + b.height / 2) });
    }, selector);
    await send('input.performActions', {
      context,
      actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: [
        { type: 'pointerMove', x: r.x, y: r.y, origin: 'viewport' },
        { type: 'pointerDown', button: 0 }, { type: 'pointerUp', button: 0 }] }],
    });
  };
  return {
    version: `${session.capabilities.browserName} ${session.capabilities.browserVersion}`,
    context, send, page, keys, tap, errors, close,
  };
}

/** WebDriver key values. */
export const KEY = { Enter: '\uE006', Escape: '\uE00C', Tab: '\uE004', Space: ' ' };
