// The relay's player in a real Chromium (fake microphone fed from FAKE_WAV):
// opens a share link (the mailbox's presigned player URL with its #key
// fragment), plays the decrypted clip, records a reply of about 3 s and
// sends it, while a parent's Sharing page on the hub shows the reply arrive
// without a reload. axe runs on the player (opened, with a reply to
// preview, after sending) and on the Sharing page (empty, with the reply).
// Started by tests/integration/relay.rs with:
//   LINK, HUB_URL, USERNAME, PASSWORD, FAKE_WAV, CONTACT
// Prints one line per step; exits non-zero on the first failure.
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe } from './common.mjs';

const LINK = env('LINK');
const HUB = env('HUB_URL');
const CONTACT = env('CONTACT');


const pageErrors = [];
function watch(page, name) {
  // The browser's own favicon request is no page error (the mailbox has none).
  page.on('console', (m) => {
    if (m.type() === 'error' && !/\/favicon\.ico$/.test(m.location().url || '')) pageErrors.push(`${name}: console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => pageErrors.push(`${name}: pageerror: ${e.message}`));
}

async function main() {
  const browser = await chromium.launch({
    timeout: LAUNCH_TIMEOUT_MS,
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${env('FAKE_WAV')}`,
      '--autoplay-policy=no-user-gesture-required',
      '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--ignore-certificate-errors',
    ],
  });
  try {
    // --- the parent: signed in on the hub, the Sharing page open
    const hubCtx = await browser.newContext({ ignoreHTTPSErrors: true });
    const sharing = await hubCtx.newPage();
    watch(sharing, 'sharing page');
    sharing.setDefaultTimeout(15000);
    await sharing.goto(`${HUB}/login`);
    await sharing.fill('#username', env('USERNAME'));
    await sharing.fill('#password', env('PASSWORD'));
    await Promise.all([sharing.waitForURL(`${HUB}/`), sharing.click('button[type=submit]')]);
    await sharing.goto(`${HUB}/sharing`);
    await sharing.locator('#shares li').first().waitFor();
    assert(await sharing.locator('#no-replies').isVisible(), 'no reply is waiting yet');
    assert(await sharing.locator('#replies li').count() === 0, 'the reply list starts empty');
    step('parent signed in; the Sharing page lists the share and no reply');
    await axe(sharing, '/sharing');

    // --- the relative: a fresh browser profile, only the link
    const origin = new URL(LINK).origin;
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await ctx.grantPermissions(['microphone'], { origin });
    const page = await ctx.newPage();
    watch(page, 'player');
    page.setDefaultTimeout(15000);
    const hubRequests = [];
    page.on('request', (r) => { if (!r.url().startsWith(origin) && !r.url().startsWith('blob:')) hubRequests.push(r.url()); });
    await page.goto(LINK);
    await page.locator('#player').waitFor({ state: 'visible' });
    const title = (await page.textContent('#title')).trim();
    const forWhom = (await page.textContent('#for')).trim();
    assert(forWhom === `For ${CONTACT}`, `the decrypted metadata names the contact (got "${forWhom}")`);
    assert(await page.locator('#reply').isVisible(), 'a reply slot is offered');
    step(`player opened "${title}" (${forWhom}), status "${(await page.textContent('#status')).trim()}"`);
    await axe(page, 'the player');

    // Play: the audio element gets a blob: URL of the decrypted clip and plays it.
    await page.click('#play');
    const played = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('audio');
      const done = (what) => resolve({ what, src: a.currentSrc, time: a.currentTime, duration: a.duration, error: a.error && a.error.code });
      const poll = setInterval(() => {
        if (a.error) { clearInterval(poll); done('error'); }
        if (a.ended) { clearInterval(poll); done('ended'); }
      }, 50);
      setTimeout(() => { clearInterval(poll); done('timeout'); }, 20000);
    }));
    assert(played.what === 'ended', `the clip played to its end: ${JSON.stringify(played)}`);
    assert(played.src.startsWith('blob:'), `played from a blob: URL (got ${played.src})`);
    assert(played.duration > 1.5 && played.duration < 2.5, `a 2 s clip (got ${played.duration})`);
    step(`play: the audio element played the decrypted ${played.duration.toFixed(2)} s clip from ${played.src.slice(0, 5)}… to its end`);

    // A browser whose audio never runs (no samples reach the page, as in
    // Firefox on a machine without sound): the player says so and offers
    // no empty reply.
    await page.evaluate(() => {
      window.realScriptProcessor = AudioContext.prototype.createScriptProcessor;
      AudioContext.prototype.createScriptProcessor = function () { return this.createGain(); };
    });
    await page.click('#record');
    await page.locator('#stop').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.getElementById('rec-time').textContent === 'Recording: 1 s', null, { timeout: 10000 });
    await page.click('#stop');
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('No sound was recorded'), null, { timeout: 5000 });
    assert(await page.locator('#preview').isHidden(), 'no empty reply is offered to preview or send');
    assert(await page.locator('#record').isVisible(), 'Record is offered again');
    step(`no samples: "${(await page.textContent('#status')).trim().slice(0, 40)}…", no preview`);
    await page.evaluate(() => { AudioContext.prototype.createScriptProcessor = window.realScriptProcessor; });

    // Record about 3 s from the fake microphone, preview, send.
    await page.click('#record');
    await page.locator('#stop').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.getElementById('rec-time').textContent === 'Recording: 3 s', null, { timeout: 10000 });
    await page.click('#stop');
    await page.locator('#preview').waitFor({ state: 'visible' });
    const preview = await page.evaluate(() => new Promise((resolve) => {
      const a = document.getElementById('preview-audio');
      const ready = () => resolve({ src: a.currentSrc, duration: a.duration });
      if (a.readyState >= 1) ready(); else a.addEventListener('loadedmetadata', ready);
      setTimeout(() => resolve({ src: a.currentSrc, duration: -1 }), 10000);
    }));
    assert(preview.src.startsWith('blob:'), `the preview is a blob: URL (got ${preview.src})`);
    assert(preview.duration > 2.5 && preview.duration < 4.5, `a reply of about 3 s to preview (got ${preview.duration})`);
    step(`recorded a ${preview.duration.toFixed(2)} s reply from the fake microphone; preview ready`);
    await axe(page, 'the player (reply to preview)');
    await page.click('#send');
    await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Your reply was sent'));
    assert(await page.locator('#reply').isHidden(), 'the only reply slot is used: recording is no longer offered');
    step(`sent: "${(await page.textContent('#status')).trim()}"`);
    await axe(page, 'the player (reply sent)');
    assert(hubRequests.length === 0, `the player asked only the mailbox, not: ${hubRequests.join(', ')}`);

    // --- the parent's page shows the reply without a reload
    const card = sharing.locator('#replies li').first();
    await card.waitFor({ timeout: 60000 });
    const text = (await card.textContent()).replace(/\s+/g, ' ').trim();
    assert(text.includes(`${CONTACT} replied`), `the card names the contact (got "${text}")`);
    assert(await sharing.locator('#no-replies').isHidden(), '"No reply is waiting" is hidden');
    step(`the Sharing page shows the reply live: "${text}"`);
    await axe(sharing, '/sharing (a reply waiting)');

    assert(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
    step('no console errors or CSP refusals');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.log(`FAIL ${e.message}`);
  for (const m of pageErrors) console.log(`     ${m}`);
  process.exit(1);
});
