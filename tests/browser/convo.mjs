// Issue 15, "conversation first", in a real Chromium on a 390×844 phone and
// a 1280×800 desktop: the toy page opens at the newest of 50 messages with
// Record in view; a bubble's one primary action is Play and the rest sit
// behind a "More" disclosure usable from the keyboard; a message's delete
// and the toy's removal ask in the styled dialog (Cancel and Escape keep,
// Confirm does; no native confirm()); day separators and relative times
// read the messages' times as the browser's day sees them, for a bubble
// that arrives live too; the record bar's status is in view and announced.
// Started by tests/integration/browser.rs (`browser_conversation_first`):
//   HUB_URL, USERNAME, PASSWORD, TOY_ID (50 messages), TOY_CERT, TOY_KEY,
//   CA_FILE, CLIP_WAV (a short recording for the toy to send live),
//   BROWSER_NOW (the browser's fixed time, the hub's day), EXPECT (JSON:
//   [{id, when_is | when_has, day_is | day_has}] for bubbles and their day
//   separators), LIVE_WHEN (the live bubble's expected time), LONE_ID (the
//   one message of its day: the phone run deletes it).
// Prints one line per step, and DELETED <id> / CANCELLED <id> for the
// Rust side to check through the API; exits non-zero on the first failure.
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe, toyClient, pageErrors, watchErrors, assertNoPageErrors, runMain } from './common.mjs';

const HUB = env('HUB_URL');
const TOY = env('TOY_ID');
const toy = toyClient(HUB);
const NOW = new Date(env('BROWSER_NOW'));
const EXPECT = JSON.parse(env('EXPECT'));
const LIVE_WHEN = env('LIVE_WHEN');
const LONE = env('LONE_ID');
const SIZES = [
  { name: 'phone', viewport: { width: 390, height: 844 } },
  { name: 'desktop', viewport: { width: 1280, height: 800 } },
];

const nativeDialogs = [];
function watch(page, name) {
  watchErrors(page, name);
  // The app must never fall back to the browser's own pop-ups.
  page.on('dialog', (d) => { nativeDialogs.push(`${name}: ${d.type()}: ${d.message()}`); d.dismiss(); });
}

// Where the page stands at load, measured in the page: the Record button,
// the bar, and the newest bubble with what is on top at its Play button.
async function layout(page) {
  return page.evaluate(() => {
    const box = (e) => { const r = e.getBoundingClientRect(); return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height }; };
    const bubbles = document.querySelectorAll('#timeline > li.bubble');
    const last = bubbles[bubbles.length - 1];
    const play = last.querySelector('[data-play]');
    const p = box(play);
    const hit = document.elementFromPoint((p.left + p.right) / 2, (p.top + p.bottom) / 2);
    return {
      bubbles: bubbles.length,
      lastId: last.dataset.id,
      scrollY: window.scrollY,
      innerHeight: window.innerHeight,
      record: box(document.querySelector('[data-record]')),
      bar: box(document.querySelector('[data-recorder]')),
      last: box(last),
      playOnTop: hit === play,
    };
  });
}

// The text of each bubble's time and the day separator above it.
async function dayOf(page, id) {
  return page.evaluate((id) => {
    const li = document.getElementById(`msg-${id}`);
    let s = li.previousElementSibling;
    while (s && !s.classList.contains('day')) s = s.previousElementSibling;
    return { when: li.querySelector('time[data-when]').textContent.trim(), day: s ? s.textContent.trim() : null };
  }, id);
}

function checkTimes(got, e, label) {
  if (e.when_is) assert(got.when === e.when_is, `${label}: bubble ${e.id} reads "${e.when_is}" (got "${got.when}")`);
  for (const part of e.when_has || []) assert(got.when.includes(part), `${label}: bubble ${e.id}'s time "${got.when}" has "${part}"`);
  if (e.day_is) assert(got.day === e.day_is, `${label}: bubble ${e.id} is under "${e.day_is}" (got "${got.day}")`);
  for (const part of e.day_has || []) assert(got.day && got.day.includes(part), `${label}: bubble ${e.id}'s day "${got.day}" has "${part}"`);
}

// The element showing `re` in main, with its box and whether it is in a
// live region.
async function shown(page, re) {
  const handle = await page.waitForFunction((src) => {
    const re = new RegExp(src);
    const all = Array.from(document.querySelectorAll('main *')).filter((e) => re.test(e.textContent));
    const inner = all.filter((e) => !all.some((o) => o !== e && e.contains(o)));
    return inner.length ? inner : null;
  }, re.source);
  return handle.evaluate((list) => list.map((e) => {
    const r = e.getBoundingClientRect();
    return { text: e.textContent.trim(), top: r.top, bottom: r.bottom, height: r.height,
      live: !!e.closest('[aria-live], [role=status], [role=alert]'), inBar: !!e.closest('[data-recorder]') };
  }));
}

async function listed(page, id) {
  const r = await page.request.get(`${HUB}/api/v1/messages?toy=${encodeURIComponent(TOY)}&limit=100`);
  assert(r.ok(), `the message list answers (${r.status()})`);
  return (await r.json()).messages.some((m) => m.id === id);
}

// The styled dialog is open, named `title`, with Cancel focused.
async function dialogOpen(page, title) {
  const d = page.locator('dialog[data-ask][open]');
  await d.waitFor();
  const name = (await d.locator('h2').textContent()).trim();
  assert(title.test(name), `the dialog asks "${name}"`);
  assert(await page.evaluate(() => document.activeElement && document.activeElement.hasAttribute('data-ask-cancel')),
    'Cancel has the focus first');
  assert(await page.evaluate(() => document.querySelector('dialog[data-ask]').matches(':modal')), 'the dialog is modal');
  return d;
}

// With SCREENSHOT_DIR set, the screen as a parent sees it (a test
// artefact, not committed).
async function shot(page, label) {
  const dir = process.env.SCREENSHOT_DIR;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: `${dir}/${label}.png` });
}

async function run(browser, size) {
  const { name, viewport } = size;
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport, locale: 'en-GB', timezoneId: 'UTC' });
  const page = await ctx.newPage();
  watch(page, `${name} toy page`);
  // The browser's day is the hub's day 9 (see browser.rs).
  await page.clock.setFixedTime(NOW);
  await page.goto(`${HUB}/login`);
  await page.fill('#username', env('USERNAME'));
  await page.fill('#password', env('PASSWORD'));
  await Promise.all([page.waitForURL(`${HUB}/`), page.click('button[type=submit]')]);
  const stream = page.waitForResponse((r) => r.url().endsWith('/api/v1/events'));
  await page.goto(`${HUB}/toys/${TOY}`);
  await page.waitForLoadState('load');
  await stream;

  // --- 1. It opens at the newest message, Record in reach.
  const at = await layout(page);
  step(`${name}: at load ${JSON.stringify(at)}`);
  assert(at.bubbles >= 50, `${name}: 50 messages on the page (${at.bubbles})`);
  assert(at.record.top >= 0 && at.record.bottom <= at.innerHeight, `${name}: Record is inside the screen without scrolling`);
  assert(at.last.top >= 0 && at.last.bottom <= at.bar.top + 1, `${name}: the newest bubble is in view above the record bar`);
  assert(at.playOnTop, `${name}: the newest bubble's Play is not covered`);
  // And stays in reach when the reader scrolls back to the oldest.
  await page.evaluate(() => window.scrollTo(0, 0));
  const top = await page.locator('[data-record]').evaluate((e) => { const r = e.getBoundingClientRect(); return { top: r.top, bottom: r.bottom }; });
  assert(top.top >= 0 && top.bottom <= at.innerHeight, `${name}: Record stays in view at the top of the conversation (${JSON.stringify(top)})`);
  await page.evaluate((y) => window.scrollTo(0, y), at.scrollY);
  step(`${name}: opens at the newest of ${at.bubbles} messages, Record in view`);
  await shot(page, `toy-${name}`);
  await axe(page, `/toys/${TOY} at the newest message (${name})`);

  // --- 4. Day separators and relative times.
  const lone = await page.locator(`#msg-${LONE}`).count() === 1;
  for (const e of EXPECT) if (lone || e.id !== LONE) checkTimes(await dayOf(page, e.id), e, name);
  const days = await page.locator('#timeline > li.day').allTextContents();
  const nDays = lone ? 5 : 4;
  assert(days.length === nDays, `${name}: ${nDays} day separators (${JSON.stringify(days)})`);
  assert(days[days.length - 2] === 'Yesterday' && days[days.length - 1] === 'Today', `${name}: the last two are Yesterday and Today (${JSON.stringify(days)})`);
  step(`${name}: days ${JSON.stringify(days)}; times as expected`);

  // --- 2. One primary action; the rest behind "More", by keyboard.
  const lastId = at.lastId;
  const actions = page.locator(`#msg-${lastId} .bubble-actions`);
  const visible = await actions.locator('button:visible').allTextContents();
  assert(JSON.stringify(visible.map((t) => t.trim())) === '["Play","More"]', `${name}: the bubble shows Play and More only (${JSON.stringify(visible)})`);
  const more = page.locator(`#msg-${lastId} [data-menu]`);
  assert(await more.getAttribute('aria-expanded') === 'false', 'More starts closed');
  await more.focus();
  await page.keyboard.press('Enter');
  assert(await more.getAttribute('aria-expanded') === 'true', `${name}: Enter opens the menu`);
  await page.locator(`#menu-${lastId}`).waitFor();
  await page.keyboard.press('Tab');
  assert(await page.evaluate(() => document.activeElement.hasAttribute('data-keep')), `${name}: Tab goes into the menu (Keep)`);
  await axe(page, `/toys/${TOY} with a bubble's menu open (${name})`);
  await shot(page, `toy-menu-${name}`);
  await page.keyboard.press('Escape');
  await page.locator(`#menu-${lastId}`).waitFor({ state: 'hidden' });
  assert(await more.getAttribute('aria-expanded') === 'false', `${name}: Escape closes the menu`);
  assert(await page.evaluate(() => document.activeElement.hasAttribute('data-menu')), `${name}: and puts focus back on More`);
  await page.keyboard.press(' ');
  await page.locator(`#menu-${lastId}`).waitFor();
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.locator(`#msg-${lastId} [data-keep][aria-pressed=true]`).waitFor();
  const kept = await shown(page, /^Kept: it will not disappear\.$/);
  assert(kept.some((n) => n.live && n.top >= 0 && n.bottom <= at.innerHeight), `${name}: "Kept" is said by the bubble, in view, announced (${JSON.stringify(kept)})`);
  // A click elsewhere closes it.
  await page.click(`#msg-${lastId} .meta`);
  await page.locator(`#menu-${lastId}`).waitFor({ state: 'hidden' });
  step(`${name}: More opens with Enter and Space, Escape closes it, Keep works from it`);

  if (name === 'phone') {
    // --- 4 (live). A recording arrives: under "Today", its time relative,
    // and the page follows it.
    const up = await toy('POST', '/toy/v1/recordings', {
      body: fs.readFileSync(env('CLIP_WAV')),
      headers: { 'content-type': 'audio/wav', 'idempotency-key': `convo-live-${Date.now()}` },
    });
    assert(up.status === 201, `the toy's live recording (${up.status})`);
    const liveId = up.json.id;
    await page.locator(`#msg-${liveId}`).waitFor();
    checkTimes(await dayOf(page, liveId), { id: liveId, when_is: LIVE_WHEN, day_is: 'Today' }, `${name} live`);
    assert(await page.locator('#timeline > li.day').count() === 5, 'no separator added for the same day');
    await page.waitForFunction((id) => {
      const r = document.getElementById(`msg-${id}`).getBoundingClientRect();
      const bar = document.querySelector('[data-recorder]').getBoundingClientRect();
      return r.top >= 0 && r.bottom <= bar.top + 1;
    }, liveId);
    step(`${name}: a live bubble reads "${LIVE_WHEN}" under Today, scrolled into view`);

    // --- 5. The record bar's status: next to it, in view, announced.
    await page.setInputFiles('[data-upload]', env('CLIP_WAV'));
    const st = await shown(page, /^Listen to the file/);
    assert(st.some((n) => n.inBar && n.live && n.top >= 0 && n.bottom <= at.innerHeight), `${name}: the bar's status is in view and announced (${JSON.stringify(st)})`);
    assert(await page.locator('[data-send]').isVisible() && await page.locator('[data-discard]').isVisible(), 'Send and Cancel after a take');
    assert(!(await page.locator('label[for=upload]').isVisible()), '"Send a file" steps aside during a take');
    const rec = await page.locator('[data-record]').boundingBox();
    assert(rec.y >= 0 && rec.y + rec.height <= at.innerHeight, 'Record still in view with the preview');
    await axe(page, `/toys/${TOY} with a file to send (${name})`);
    await shot(page, `toy-take-${name}`);
    await page.click('[data-discard]');
    await page.locator('[data-send]').waitFor({ state: 'hidden' });
    await page.locator('label[for=upload]').waitFor();
    step(`${name}: status by the record bar: "${st[0].text}"`);
    // "Send a file" is reached with Tab from Record, and shows the focus.
    await page.focus('[data-record]');
    await page.keyboard.press('Tab');
    const fileFocus = await page.evaluate(() => ({
      id: document.activeElement.id,
      outline: getComputedStyle(document.querySelector('label[for=upload]')).outlineStyle,
    }));
    assert(fileFocus.id === 'upload' && fileFocus.outline !== 'none', `${name}: Tab from Record reaches "Send a file", outlined (${JSON.stringify(fileFocus)})`);

    // --- 3. Deleting a message asks in the styled dialog.
    const victim = LONE;
    const keep = EXPECT.find((e) => e.id !== LONE).id;
    const victimDay = (await dayOf(page, victim)).day;
    await page.click(`#msg-${victim} [data-menu]`);
    await page.click(`#msg-${victim} [data-delete]`);
    await dialogOpen(page, /^Delete this message\?$/);
    await axe(page, `/toys/${TOY} delete dialog (${name})`);
    await shot(page, `toy-dialog-${name}`);
    await page.click('dialog[data-ask] [data-ask-cancel]');
    await page.locator('dialog[data-ask]').waitFor({ state: 'hidden' });
    assert(await page.locator(`#msg-${victim}`).count() === 1 && await listed(page, victim), `${name}: Cancel keeps the message`);
    assert(await page.evaluate(() => document.activeElement.hasAttribute('data-delete')), 'focus is back on Delete');
    await page.keyboard.press('Enter');
    await dialogOpen(page, /^Delete this message\?$/);
    await page.keyboard.press('Escape');
    await page.locator('dialog[data-ask]').waitFor({ state: 'hidden' });
    assert(await listed(page, victim), `${name}: Escape keeps the message`);
    // Cancel on another message too: the Rust side checks it is still there.
    await page.click(`#msg-${keep} [data-menu]`);
    await page.click(`#msg-${keep} [data-delete]`);
    await dialogOpen(page, /^Delete this message\?$/);
    await page.click('dialog[data-ask] [data-ask-cancel]');
    await page.locator('dialog[data-ask]').waitFor({ state: 'hidden' });
    await page.click(`#msg-${victim} [data-menu]`);
    await page.click(`#msg-${victim} [data-delete]`);
    await dialogOpen(page, /^Delete this message\?$/);
    await page.click('dialog[data-ask] [data-ask-confirm]');
    await page.locator(`#msg-${victim}`).waitFor({ state: 'detached' });
    assert(!(await listed(page, victim)), `${name}: Confirm deletes it`);
    assert(await listed(page, keep), `${name}: the other message stays`);
    const seps = await page.locator('#timeline > li.day').allTextContents();
    assert(seps.length === 4 && !seps.includes(victimDay), `${name}: its day's separator "${victimDay}" went with it (${JSON.stringify(seps)})`);
    console.log(`DELETED ${victim}`);
    console.log(`CANCELLED ${keep}`);
    step(`${name}: delete asks in the styled dialog; Cancel and Escape keep, Delete deletes`);
  } else {
    // --- 3. The other pages' destructive buttons ask the same way: "Delete
    // all messages" on Your data, cancelled.
    const before = (await (await page.request.get(`${HUB}/api/v1/messages?toy=${encodeURIComponent(TOY)}&limit=100`)).json()).messages.length;
    await page.goto(`${HUB}/data`);
    await page.click(`[data-delete-messages="${TOY}"]`);
    await dialogOpen(page, /^Delete every message of .+\?$/);
    await axe(page, `/data delete dialog (${name})`);
    await page.click('dialog[data-ask] [data-ask-cancel]');
    await page.locator('dialog[data-ask]').waitFor({ state: 'hidden' });
    const after = (await (await page.request.get(`${HUB}/api/v1/messages?toy=${encodeURIComponent(TOY)}&limit=100`)).json()).messages.length;
    assert(after === before && before >= 50, `${name}: Cancel on Your data deletes nothing (${before} → ${after})`);
    step(`${name}: "Delete all messages" asks in the styled dialog; Cancel keeps all ${after}`);
    await page.goto(`${HUB}/toys/${TOY}`);

    // --- 3. Removing the toy asks in the styled dialog.
    await page.click('[data-settings] > summary');
    await page.click('[data-remove]');
    await dialogOpen(page, /^Remove .+\?$/);
    await axe(page, `/toys/${TOY} remove dialog (${name})`);
    await page.click('dialog[data-ask] [data-ask-cancel]');
    await page.locator('dialog[data-ask]').waitFor({ state: 'hidden' });
    const toys = async () => (await (await page.request.get(`${HUB}/api/v1/toys`)).json()).paired.map((t) => t.toy_id);
    assert((await toys()).includes(TOY), `${name}: Cancel keeps the toy`);
    assert(page.url().endsWith(`/toys/${TOY}`), 'and stays on its page');
    await page.click('[data-remove]');
    await dialogOpen(page, /^Remove .+\?$/);
    await Promise.all([page.waitForURL(`${HUB}/toys`), page.click('dialog[data-ask] [data-ask-confirm]')]);
    assert(!(await toys()).includes(TOY), `${name}: Confirm removes the toy`);
    step(`${name}: removing the toy asks in the styled dialog; Cancel keeps it, Remove removes it`);
  }
  await ctx.close();
}

async function main() {
  const browser = await chromium.launch({
    timeout: LAUNCH_TIMEOUT_MS,
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--ignore-certificate-errors', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    for (const size of SIZES) await run(browser, size);
    assert(nativeDialogs.length === 0, `native pop-ups were used: ${nativeDialogs.join('; ')}`);
    assertNoPageErrors();
    console.log('PASS conversation first');
  } finally {
    await browser.close();
  }
}

runMain(main);
