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
// Firefox is driven by ./firefox.mjs (why not Playwright: see there).
//
// Started by tests/integration/relay.rs with: LINK, CONTACT (FIREFOX
// optional: the executable, /usr/bin/firefox-esr by default).
// Prints one line per step; exits non-zero on the first failure.
import { env, step, assert } from './common.mjs';
import { firefox } from './firefox.mjs';

const LINK = env('LINK');
const CONTACT = env('CONTACT');

let ff = null;
function finish(code) {
  ff?.close();
  process.exit(code);
}

async function main() {
  ff = await firefox({
    prefs: {
      // Play without waiting for a real gesture.
      'media.autoplay.default': 0,
      // Sound goes to ALSA's null device (see .asoundrc below): without any
      // sound device, the audio element reports its sink's failure
      // ("OnMediaSinkAudioError") although it decodes the clip.
      'media.cubeb.backend': 'alsa',
    },
    files: { '.asoundrc': 'pcm.!default { type null }\nctl.!default { type hw card 0 }\n' },
    // The browser's own favicon request is no page error (the mailbox has
    // none, and the player's CSP refuses it).
    ignore: /\/favicon\.ico\b/,
  });
  const { page, send, context, errors } = ff;
  step(`${ff.version} over WebDriver BiDi`);
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
  for (const m of ff?.errors || []) console.log(`     ${m}`);
  finish(1);
});
