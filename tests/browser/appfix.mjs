// The parents' app's bugs of issue 15, each shown fixed in a real Chromium
// on a 390×844 phone screen. Started by tests/integration/browser.rs
// (`browser_app_fixes`) with:
//   HUB_URL, USERNAME, PASSWORD, TOY_ID (online, 8 messages), OFFLINE_TOY,
//   TOY_CERT, TOY_KEY, CA_FILE, FAKE_WAV (the microphone), FILE_WAV (3.5 s)
// Prints one line per step; exits non-zero on the first failure.
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe, toyClient, pageErrors, watchErrors, assertNoPageErrors, runMain } from './common.mjs';

const HUB = env('HUB_URL');
const toy = toyClient(HUB);
const TOY = env('TOY_ID');
const OFFLINE = env('OFFLINE_TOY');
const VIEW = { width: 390, height: 844 };


// The toy, over mutual TLS.


function watch(page, name) {
  watchErrors(page, name);
  page.on('dialog', (d) => d.accept());
}

// The element showing `re` (the innermost one), its box, and whether it
// sits in a live region; fails when no element shows it.
async function shown(page, re) {
  const handle = await page.waitForFunction((src) => {
    const re = new RegExp(src);
    const all = Array.from(document.querySelectorAll('main *')).filter((e) => re.test(e.textContent));
    const inner = all.filter((e) => !all.some((o) => o !== e && e.contains(o)));
    return inner.length ? inner : null;
  }, re.source);
  const nodes = await handle.evaluate((list) => list.map((e) => {
    const r = e.getBoundingClientRect();
    const live = e.closest('[aria-live], [role=status], [role=alert]');
    return { text: e.textContent.trim(), top: r.top, bottom: r.bottom, height: r.height, live: !!live };
  }));
  return nodes;
}

function inView(n) {
  // One pixel of slack for sub-pixel layout (a 25.5 px line ending at 844.28).
  return n.height > 0 && n.top >= 0 && n.bottom <= VIEW.height + 1;
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
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: VIEW });
    await ctx.grantPermissions(['microphone'], { origin: HUB });
    // The toy calls the hub: online (the other toy has been quiet for minutes).
    assert((await toy('GET', '/toy/v1/whoami')).status === 200, 'the toy is paired');
    const page = await ctx.newPage();
    watch(page, 'toy page');
    await page.goto(`${HUB}/login`);
    await page.fill('#username', env('USERNAME'));
    await page.fill('#password', env('PASSWORD'));
    await Promise.all([page.waitForURL(`${HUB}/`), page.click('button[type=submit]')]);
    step('signed in');

    // --- c. A blocked microphone: the error shows next to Record, in view.
    const blocked = await ctx.newPage();
    watch(blocked, 'blocked microphone');
    await blocked.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    await blocked.goto(`${HUB}/toys/${TOY}`);
    const bubbles = await blocked.locator('#timeline li.bubble').count();
    assert(bubbles >= 8, `the toy page holds at least 8 messages (${bubbles})`);
    await blocked.click('[data-record]');
    const micErr = await shown(blocked, /microphone is not available/);
    step(`blocked microphone: ${JSON.stringify(micErr)}`);
    assert(micErr.some(inView), `the microphone error is within the 390×844 screen (${JSON.stringify(micErr)})`);
    assert(micErr.filter(inView).every((n) => n.live), 'and announced (in a live region)');
    await axe(blocked, `/toys/${TOY} (microphone error)`);
    await blocked.close();

    // --- l. An audio context that never starts: Record comes back with a message.
    const silent = await ctx.newPage();
    watch(silent, 'no audio output');
    await silent.addInitScript(() => {
      const never = () => new Promise(() => {});
      AudioWorklet.prototype.addModule = never;
      AudioContext.prototype.resume = never;
      Object.defineProperty(AudioContext.prototype, 'state', { get: () => 'suspended' });
    });
    await silent.goto(`${HUB}/toys/${TOY}`);
    await silent.click('[data-record]');
    const noAudio = await shown(silent, /did not start/);
    assert(noAudio.some(inView), `the "did not start" message is in view (${JSON.stringify(noAudio)})`);
    await silent.locator('[data-record]:not([disabled])').waitFor({ timeout: 10000 });
    assert(await silent.getAttribute('[data-record]', 'aria-pressed') === 'false', 'Record is not left pressed');
    step(`an audio context that never starts: Record usable again, "${noAudio[0].text}"`);
    await silent.close();

    // --- j. One rounding rule: "Recorded m:ss" is the player's length, rounded.
    await page.goto(`${HUB}/toys/${TOY}`);
    await page.click('[data-record]');
    await page.waitForFunction(() => /Recording 0:03/.test(document.querySelector('[data-rec-time]').textContent));
    await page.click('[data-record]');
    await page.locator('[data-preview]:not([hidden])').waitFor();
    const recDur = await page.evaluate(() => new Promise((resolve) => {
      const a = document.querySelector('[data-preview]');
      if (a.readyState >= 1 && isFinite(a.duration)) resolve(a.duration);
      else a.addEventListener('loadedmetadata', () => resolve(a.duration), { once: true });
    }));
    const recText = await page.textContent('[data-rec-time]');
    const mmss = (s) => `${Math.floor(Math.round(s) / 60)}:${String(Math.round(s) % 60).padStart(2, '0')}`;
    assert(recText.includes(`Recorded ${mmss(recDur)}`), `"${recText}" says the player's ${recDur.toFixed(2)} s as ${mmss(recDur)}`);
    step(`recorded ${recDur.toFixed(2)} s reads "${recText.trim()}"`);

    // --- b. Ticks stay live: the list fetched after sending answers late,
    // after the toy played the message; the bubble must stay "played".
    let fetched;
    const listFetched = new Promise((r) => { fetched = r; });
    let release;
    const released = new Promise((r) => { release = r; });
    const listPattern = /\/api\/v1\/messages\?toy=/;
    await page.route(listPattern, async (route) => {
      const stale = await route.fetch();
      fetched();
      await released;
      await route.fulfill({ response: stale });
    });
    await page.click('[data-send]');
    await listFetched;
    const sentMsg = await shown(page, /^Sent\./);
    assert(sentMsg.some((n) => inView(n) && /will play it soon/.test(n.text)), `an online toy "will play it soon", in view (${JSON.stringify(sentMsg)})`);
    step(`sent to an online toy: "${sentMsg[0].text}"`);
    const inbox = await toy('GET', '/toy/v1/inbox?wait=10');
    assert(inbox.status === 200 && inbox.json.messages.length === 1, `inbox: ${inbox.status} ${inbox.body}`);
    const sentId = inbox.json.messages[0].id;
    assert((await toy('GET', inbox.json.messages[0].audio)).status === 200, 'the toy downloads it');
    assert((await toy('POST', `/toy/v1/messages/${sentId}/played`)).status === 204, 'the toy played it');
    await page.locator(`#msg-${sentId}[data-state=played]`).waitFor();
    const applied = await page.evaluate(() => Number(document.querySelector('#timeline').dataset.refreshed) || 0);
    release();
    // The page has applied the late answer (it counts the lists it applied).
    await page.waitForFunction((n) => Number(document.querySelector('#timeline').dataset.refreshed) > n, applied);
    await page.unroute(listPattern);
    const state = await page.getAttribute(`#msg-${sentId}`, 'data-state');
    const ticks = await page.textContent(`#msg-${sentId} [data-ticks]`);
    assert(state === 'played' && ticks.includes('✓✓'), `the bubble stays played after a late list (state ${state}, ticks "${ticks}")`);
    step(`ticks stay live: "${ticks.trim()}" after the late list`);

    // --- k, j, f. A chosen file is previewed, not sent; Cancel drops it;
    // Send sends it, and an offline toy is said to get it later.
    const posts = [];
    page.on('request', (r) => { if (r.method() === 'POST' && r.url().includes('/messages')) posts.push(r.url()); });
    await page.goto(`${HUB}/toys/${OFFLINE}`);
    await page.setInputFiles('[data-upload]', env('FILE_WAV'));
    await page.locator('[data-preview]:not([hidden])').waitFor();
    await page.waitForFunction(() => /\(0:0\d\)/.test(document.querySelector('[data-rec-time]').textContent));
    const fileText = await page.textContent('[data-rec-time]');
    const fileDur = await page.evaluate(() => document.querySelector('[data-preview]').duration);
    assert(Math.abs(fileDur - 3.5) < 0.05, `the player reads the 3.5 s file (${fileDur})`);
    assert(fileText.includes('(0:04)'), `3.5 s reads 0:04 like the player (got "${fileText}")`);
    assert(posts.length === 0, `nothing is sent before Send (${posts})`);
    assert(!(await page.locator('[data-send]').isDisabled()), 'Send is offered');
    assert((await page.textContent('[data-discard]')).trim() === 'Cancel', 'and Cancel');
    await axe(page, `/toys/${OFFLINE} (file preview)`);
    step(`file previewed, not sent: "${fileText.trim()}"`);
    await page.click('[data-discard]');
    await page.locator('[data-preview]').waitFor({ state: 'hidden' });
    assert(posts.length === 0, 'Cancel sends nothing');
    await page.setInputFiles('[data-upload]', env('FILE_WAV'));
    await page.locator('[data-preview]:not([hidden])').waitFor();
    const uploaded = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/api/v1/toys/${OFFLINE}/messages`));
    await page.click('[data-send]');
    const answer = await uploaded;
    assert(answer.status() === 201, `the file is stored (${answer.status()})`);
    const offMsg = await shown(page, /^Sent\./);
    assert(offMsg.some((n) => inView(n) && /next online/.test(n.text) && !/will play it soon/.test(n.text)),
      `an offline toy gets it when next online (${JSON.stringify(offMsg)})`);
    assert(posts.length === 1, `one upload (${posts.length})`);
    step(`sent to an offline toy: "${offMsg[0].text}"`);

    // --- d. Removing a toy: other open pages follow; its kept message stays reachable.
    await page.goto(`${HUB}/toys/${TOY}`);
    await page.click(`#msg-${sentId} [data-menu]`);
    await page.click(`#msg-${sentId} [data-keep]`);
    await page.locator(`#msg-${sentId} [data-keep][aria-pressed=true]`).waitFor();
    // Two more pages, their event streams open (answered) before the removal.
    const streamOpen = (p) => p.waitForResponse((r) => r.url().endsWith('/api/v1/events'));
    const other = await ctx.newPage();
    watch(other, 'other toy page');
    const otherStream = streamOpen(other);
    await other.goto(`${HUB}/toys/${TOY}`);
    await otherStream;
    const home = await ctx.newPage();
    watch(home, 'home page');
    const homeStream = streamOpen(home);
    await home.goto(`${HUB}/`);
    await homeStream;
    await home.locator(`#home-toys li[data-toy="${TOY}"]`).waitFor();
    await page.click('[data-settings] > summary');
    await page.click('[data-remove]');
    await page.locator('dialog[data-ask][open]').waitFor();
    await Promise.all([page.waitForURL(`${HUB}/toys`), page.click('dialog[data-ask] [data-ask-confirm]')]);
    step('toy removed from its page');
    await other.locator('[data-recorder]').waitFor({ state: 'hidden' });
    assert(!(await other.locator('[data-record]').isVisible()), 'the other page offers no Record any more');
    const note = (await other.textContent('[data-removed-note]')).trim();
    assert(/was removed/.test(note), `the other page says it was removed ("${note}")`);
    assert((await other.textContent('[data-toy-badge]')).trim() === 'removed', 'its badge says removed');
    await home.locator(`#home-toys li[data-toy="${TOY}"]`).waitFor({ state: 'detached' });
    step(`the other open pages followed live: "${note}"`);
    await axe(other, `/toys/${TOY} (removed live)`);
    const r = await other.goto(`${HUB}/toys/${TOY}`);
    assert(r.status() === 200, `the removed toy's page answers 200 (got ${r.status()})`);
    const h1 = await other.textContent('main h1');
    assert(/removed/.test(h1), `its title says removed ("${h1}")`);
    await other.locator(`#msg-${sentId} [data-keep][aria-pressed=true]`).waitFor({ state: 'attached' });
    assert(await other.locator('[data-record]').count() === 0, 'no Record on a removed toy');
    await axe(other, `/toys/${TOY} (removed)`);
    await page.goto(`${HUB}/toys`);
    await page.locator(`#removed-list a[href="/toys/${TOY}"]`).waitFor();
    await axe(page, '/toys (with a removed toy)');
    step('the removed toy\'s page lists its kept message, and the toys page links it');

    assertNoPageErrors();
    console.log(`KEPT ${sentId}`);
    console.log('PASS app fixes');
  } finally {
    await browser.close();
  }
}

runMain(main);
