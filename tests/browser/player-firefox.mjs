// The relay's player in a real Firefox (Debian's firefox-esr), driven over
// WebDriver BiDi, the protocol Firefox itself serves: opens a share link
// (the mailbox's presigned player URL with its #key fragment), checks the
// metadata decrypted by Firefox's WebCrypto names the contact, and plays
// the decrypted Ogg Opus clip from a blob: URL to its end.
//
// Not here: recording a reply. On this machine (a container without any
// sound device) Firefox's Web Audio graph never runs: an AudioContext stays
// "suspended" although navigator.getAutoplayPolicy says "allowed", with
// ALSA's null device as output or without, so the player's recorder gets
// no samples. Recording and sending are tested in Chromium (player.mjs).
//
// Why not Playwright: playwright-core drives Firefox either through its own
// patched build (a download this machine cannot make) or, for a stock
// Firefox, through BiDi commands newer than Firefox ESR answers
// (`emulation.setMediaFeaturesOverride` is refused as an unknown command
// when a context is created). So this file speaks the few BiDi commands it
// needs itself, over Node's WebSocket (`node --experimental-websocket` on
// Node 20). axe runs in the Chromium test; the page is the same file.
//
// Started by tests/integration/relay.rs with: LINK, CONTACT (FIREFOX
// optional: the executable, /usr/bin/firefox-esr by default).
// Prints one line per step; exits non-zero on the first failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { env, step, fail, assert } from './common.mjs';

const LINK = env('LINK');
const CONTACT = env('CONTACT');

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-firefox-'));
const prefs = {
  // Play without waiting for a real gesture.
  'media.autoplay.default': 0,
  // Sound goes to ALSA's null device (see .asoundrc below): without any
  // sound device, the audio element reports its sink's failure
  // ("OnMediaSinkAudioError") although it decodes the clip.
  'media.cubeb.backend': 'alsa',
  // Stay quiet: no updates, telemetry or first-run pages.
  'app.update.disabledForTesting': true,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.reportingpolicy.firstRun': false,
  'browser.startup.homepage_override.mstone': 'ignore',
};
fs.writeFileSync(path.join(profile, 'user.js'),
  Object.entries(prefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join('\n') + '\n');

fs.writeFileSync(path.join(profile, '.asoundrc'), 'pcm.!default { type null }\nctl.!default { type hw card 0 }\n');

const firefox = spawn(process.env.FIREFOX || '/usr/bin/firefox-esr',
  ['--headless', '--no-remote', '--remote-debugging-port=0', '--profile', profile],
  { stdio: ['ignore', 'ignore', 'pipe'], // HOME is the profile: ALSA reads its .asoundrc from there, and Firefox
  // refuses a home owned by another user (root's under sudo).
  env: { ...process.env, HOME: profile, MOZ_CRASHREPORTER_DISABLE: '1' } });
let ws;

function finish(code) {
  try { ws?.close(); } catch { /* closing anyway */ }
  firefox.kill();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

const errors = [];
let nextId = 0;
const waiting = new Map();
function send(method, params) {
  return new Promise((resolve, reject) => {
    const id = ++nextId;
    waiting.set(id, (m) => (m.type === 'error' ? reject(new Error(`${method}: ${m.error}: ${m.message}`)) : resolve(m.result)));
    ws.send(JSON.stringify({ id, method, params }));
  });
}

// Runs `fn` (source of an async function) in the page with a user
// activation (as a tap would give) and returns its JSON result.
let context;
async function page(fn) {
  const r = await send('script.callFunction', {
    functionDeclaration: fn.toString(),
    target: { context },
    awaitPromise: true,
    userActivation: true,
  });
  if (r.type === 'exception') fail(`in the page: ${r.exceptionDetails.text}`);
  return r.result.type === 'string' ? JSON.parse(r.result.value) : null;
}

async function main() {
  const url = await new Promise((resolve, reject) => {
    let log = '';
    firefox.stderr.on('data', (d) => {
      log += d;
      const m = log.match(/WebDriver BiDi listening on (ws:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    firefox.on('exit', (c) => reject(new Error(`firefox exited (${c}): ${log}`)));
    setTimeout(() => reject(new Error(`firefox did not start its BiDi server in 60 s: ${log}`)), 60000);
  });
  ws = new WebSocket(`${url}/session`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('BiDi connection failed')); });
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
    // The browser's own favicon request is no page error (the mailbox has
    // none, and the player's CSP refuses it).
    if (m.method === 'log.entryAdded' && m.params.level === 'error' && !/\/favicon\.ico\b/.test(m.params.text)) errors.push(m.params.text);
  };
  const session = await send('session.new', { capabilities: {} });
  step(`${session.capabilities.browserName} ${session.capabilities.browserVersion} over WebDriver BiDi`);
  await send('session.subscribe', { events: ['log.entryAdded'] });
  context = (await send('browsingContext.getTree', {})).contexts[0].context;
  await send('browsingContext.setViewport', { context, viewport: { width: 390, height: 844 } });
  await send('browsingContext.navigate', { context, url: LINK, wait: 'complete' });

  const opened = await page(async () => {
    const until = async (cond, ms, what) => {
      const end = Date.now() + ms;
      while (!cond()) { if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`); await new Promise((r) => setTimeout(r, 50)); }
    };
    await until(() => !document.getElementById('player').hidden, 15000, 'the player shows');
    return JSON.stringify({
      title: document.getElementById('title').textContent.trim(),
      for: document.getElementById('for').textContent.trim(),
      reply: !document.getElementById('reply').hidden,
    });
  });
  assert(opened.for === `For ${CONTACT}`, `the decrypted metadata names the contact (got "${opened.for}")`);
  assert(opened.reply, 'a reply slot is offered');
  step(`player opened "${opened.title}" (${opened.for})`);

  const played = await page(async () => {
    document.getElementById('play').click();
    const a = document.getElementById('audio');
    const end = Date.now() + 20000;
    while (!a.ended && !a.error && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return JSON.stringify({
      ended: a.ended, time: a.currentTime, src: a.currentSrc, duration: a.duration,
      error: a.error && `${a.error.code} ${a.error.message}`,
    });
  });
  assert(played.ended && played.time >= played.duration - 0.1, `the clip played to its end: ${JSON.stringify(played)}`);
  assert(!played.error, `no media error: ${played.error}`);
  assert(played.src.startsWith('blob:'), `played from a blob: URL (got ${played.src})`);
  assert(played.duration > 1.5 && played.duration < 2.5, `a 2 s clip (got ${played.duration})`);
  step(`play: the decrypted ${played.duration.toFixed(2)} s clip played to its end from a blob: URL`);

  assert(errors.length === 0, `console errors: ${errors.join('; ')}`);
  step('no console errors or CSP refusals');
}

main().then(() => finish(0), (e) => {
  console.log(`FAIL ${e.message}`);
  for (const m of errors) console.log(`     ${m}`);
  finish(1);
});
