// Issue 15, "conversation first", in Debian's Firefox ESR on a 390×844
// screen (driven over WebDriver BiDi by ./firefox.mjs): the toy page opens
// at the newest of 50 messages with Record in view, and Record stays in
// view at the top; relative times and day words come out of Firefox's own
// Intl; "More" opens with a tap, Escape closes it and refocuses it; Delete
// asks in the styled <dialog> (modal, Cancel focused), Cancel keeps the
// message, Delete deletes it. axe, Enter, Tab and the dialog's Escape run
// in the Chromium script (convo.mjs; headless Firefox's window has no
// focus, so keys do not reach default actions, see firefox.mjs); the page
// is the same.
// Started by tests/integration/browser.rs (`browser_conversation_first_in_firefox`)
// with HUB_URL, USERNAME, PASSWORD, TOY_ID (50 messages, all made now), and
// TZ=UTC. Prints one line per step and DELETED <id>; exits non-zero on the
// first failure.
import { env, step, assert } from './common.mjs';
import { firefox, KEY } from './firefox.mjs';

const HUB = env('HUB_URL');
const TOY = env('TOY_ID');
const VIEW = { width: 390, height: 844 };
const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

let ff = null;
function finish(code) {
  ff?.close();
  process.exit(code);
}

// Polls `fn` in the page (it returns a JSON string or null) until it
// answers, for up to 15 s.
async function until(fn, what, ...args) {
  const end = Date.now() + 15000;
  for (;;) {
    const v = await ff.page(fn, ...args).catch(() => null);
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`not within 15 s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main() {
  ff = await firefox({ capabilities: { acceptInsecureCerts: true } });
  const { page, send, context, keys, tap } = ff;
  step(`${ff.version} over WebDriver BiDi`);
  await send('browsingContext.setViewport', { context, viewport: VIEW });
  await send('browsingContext.navigate', { context, url: `${HUB}/login`, wait: 'complete' });
  await page((u, p) => {
    document.getElementById('username').value = u;
    document.getElementById('password').value = p;
    setTimeout(() => document.querySelector('form').submit(), 0);
    return '1';
  }, env('USERNAME'), env('PASSWORD'));
  await until(() => (location.pathname === '/' && document.readyState === 'complete' ? '1' : null), 'signed in');
  step('signed in');
  await send('browsingContext.navigate', { context, url: `${HUB}/toys/${TOY}`, wait: 'complete' });

  // --- Opens at the newest message, Record in reach.
  const at = await until(() => {
    if (document.readyState !== 'complete') return null;
    const box = (e) => { const r = e.getBoundingClientRect(); return { top: r.top, bottom: r.bottom, left: r.left, right: r.right }; };
    const bubbles = document.querySelectorAll('#timeline > li.bubble');
    const last = bubbles[bubbles.length - 1];
    const play = box(last.querySelector('[data-play]'));
    const hit = document.elementFromPoint((play.left + play.right) / 2, (play.top + play.bottom) / 2);
    const out = {
      bubbles: bubbles.length, lastId: last.dataset.id, innerHeight: window.innerHeight, scrollY: window.scrollY,
      record: box(document.querySelector('[data-record]')), bar: box(document.querySelector('[data-recorder]')),
      last: box(last), playOnTop: hit === last.querySelector('[data-play]'),
    };
    window.scrollTo(0, 0);
    out.recordAtTop = box(document.querySelector('[data-record]'));
    window.scrollTo(0, out.scrollY);
    return JSON.stringify(out);
  }, 'the toy page');
  step(`at load ${JSON.stringify(at)}`);
  assert(at.bubbles >= 50, `50 messages on the page (${at.bubbles})`);
  assert(at.record.top >= 0 && at.record.bottom <= at.innerHeight, 'Record is inside the screen without scrolling');
  assert(at.last.top >= 0 && at.last.bottom <= at.bar.top + 1 && at.playOnTop, 'the newest bubble is in view above the record bar');
  assert(at.recordAtTop.top >= 0 && at.recordAtTop.bottom <= at.innerHeight, 'Record stays in view at the top of the conversation');
  step(`opens at the newest of ${at.bubbles} messages, Record in view (also at the top)`);

  // --- Times in Firefox's Intl (zone UTC, as the script was started).
  const times = await page(() => {
    const day = 86400000;
    const noon = (n) => { const d = new Date(Date.now() - n * day); d.setUTCHours(12, 0, 0, 0); return d.toISOString(); };
    const last = document.querySelector('#timeline > li.bubble:last-of-type time[data-when]');
    return JSON.stringify({
      newest: last.textContent.trim(),
      days: Array.from(document.querySelectorAll('#timeline > li.day'), (e) => e.textContent.trim()),
      yesterday: window.hearthTime.relTime(noon(1)),
      yesterdayDay: window.hearthTime.dayLabel(noon(1)),
      threeDays: window.hearthTime.dayLabel(noon(3)),
      eightDays: window.hearthTime.dayLabel(noon(8)),
      eightDaysWhen: window.hearthTime.relTime(noon(8)),
    });
  });
  const ago = (n) => new Date(Date.now() - n * 86400000);
  assert(/^today \d{1,2}:\d\d/.test(times.newest), `the newest bubble reads today (got "${times.newest}")`);
  assert(JSON.stringify(times.days) === '["Today"]', `one separator, Today (${JSON.stringify(times.days)})`);
  assert(/^yesterday 12:00/.test(times.yesterday) && times.yesterdayDay === 'Yesterday', `yesterday (${times.yesterday}, ${times.yesterdayDay})`);
  assert(times.threeDays === WEEKDAYS[ago(3).getUTCDay()], `3 days back is ${WEEKDAYS[ago(3).getUTCDay()]} (got "${times.threeDays}")`);
  const d8 = String(ago(8).getUTCDate());
  assert(times.eightDays.includes(WEEKDAYS[ago(8).getUTCDay()]) && times.eightDays.includes(d8), `8 days back is a date (got "${times.eightDays}")`);
  assert(times.eightDaysWhen.includes(d8) && times.eightDaysWhen.includes('12:00'), `a short date and time (got "${times.eightDaysWhen}")`);
  step(`times: ${JSON.stringify(times)}`);

  // --- "More": a tap opens it, Escape closes it and refocuses More. (Enter
  // and Tab are Chromium's part: see firefox.mjs on keys.)
  const id = at.lastId;
  const menu = (id) => JSON.stringify({
    expanded: document.querySelector(`#msg-${id} [data-menu]`).getAttribute('aria-expanded'),
    open: !document.getElementById(`menu-${id}`).hidden,
    focus: document.activeElement.hasAttribute('data-menu') ? 'more' : document.activeElement.tagName,
  });
  await tap(`#msg-${id} [data-menu]`);
  let m = await page(menu, id);
  assert(m.expanded === 'true' && m.open, `a tap opens the menu (${JSON.stringify(m)})`);
  await page((id) => { document.querySelector(`#msg-${id} [data-keep]`).focus(); return '1'; }, id);
  await keys(KEY.Escape);
  m = await page(menu, id);
  assert(m.expanded === 'false' && !m.open && m.focus === 'more', `Escape closes it and refocuses More (${JSON.stringify(m)})`);
  step('More opens with a tap; Escape closes it and puts focus back');

  // --- Delete asks in the styled dialog.
  const dialog = () => {
    const d = document.querySelector('dialog[data-ask]');
    return JSON.stringify({
      open: !!(d && d.open), modal: !!(d && d.matches(':modal')), title: d ? d.querySelector('h2').textContent : null,
      cancelFocused: !!document.activeElement && document.activeElement.hasAttribute('data-ask-cancel'),
    });
  };
  await tap(`#msg-${id} [data-menu]`);
  await tap(`#msg-${id} [data-delete]`);
  let d = await page(dialog);
  assert(d.open && d.modal && d.title === 'Delete this message?' && d.cancelFocused, `the styled dialog asks, modal, Cancel focused (${JSON.stringify(d)})`);
  await tap('dialog[data-ask] [data-ask-cancel]');
  d = await page(dialog);
  const still = await page((id) => JSON.stringify(!!document.getElementById(`msg-${id}`)), id);
  assert(!d.open && still, `Cancel keeps the message (${JSON.stringify(d)})`);
  await tap(`#msg-${id} [data-delete]`);
  d = await page(dialog);
  assert(d.open, 'asked again');
  await tap('dialog[data-ask] [data-ask-confirm]');
  await until((id) => (document.getElementById(`msg-${id}`) ? null : '1'), 'the bubble goes', id);
  const listed = await page(async (toy, id) => {
    const r = await fetch(`/api/v1/messages?toy=${encodeURIComponent(toy)}&limit=100`);
    return JSON.stringify((await r.json()).messages.some((m) => m.id === id));
  }, TOY, id);
  assert(!listed, 'Delete deleted it');
  console.log(`DELETED ${id}`);
  step('Delete asks in the styled dialog; Cancel keeps, Delete deletes');

  assert(ff.errors.length === 0, `console errors: ${ff.errors.join('; ')}`);
  step('no console errors or CSP refusals');
  console.log('PASS conversation first in Firefox');
}

main().then(() => finish(0), (e) => {
  console.log(`FAIL ${e.message}`);
  for (const m of ff?.errors || []) console.log(`     ${m}`);
  finish(1);
});
