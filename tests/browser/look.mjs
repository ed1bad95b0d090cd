// The parents' app's look (issue 15, polish) in a real Chromium: every main
// page at 390×844 and 1280×800, in light and dark mode, with axe finding no
// violation and a screenshot of each kept in SCREENSHOT_DIR (test
// artefacts); the phone's bottom tab bar (icons, the live unread count,
// room kept for it and for a page's own bottom bar, keyboard use); the top
// menu on the desktop; error pages inside the layout with their details
// folded; the setup page's command behind "Details"; the session list in
// words; the manifest; the first-run checklist ticked and put away.
// Started by tests/integration/browser.rs (`browser_look`) with:
//   HUB_URL, USERNAME, PASSWORD, TOY_ID, TOY_CERT, TOY_KEY, CA_FILE,
//   SETUP_HUB_URL (a hub before setup), SCREENSHOT_DIR
// Prints one line per step; exits non-zero on the first failure.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe, axeResults, toyClient, pageErrors, watchErrors, assertNoPageErrors, runMain } from './common.mjs';

const HUB = env('HUB_URL');
const toy = toyClient(HUB);
const TOY = env('TOY_ID');
const SETUP_HUB = env('SETUP_HUB_URL');
const SHOTS = env('SCREENSHOT_DIR');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 800 };

let current = null;
function watch(page, name) {
  watchErrors(page, name);
}

async function signIn(page) {
  await page.goto(`${HUB}/login`);
  await page.fill('#username', env('USERNAME'));
  await page.fill('#password', env('PASSWORD'));
  await Promise.all([page.waitForURL(`${HUB}/`), page.click('button[type=submit]')]);
}

// Relative luminance of a computed `rgb(…)` colour.
function luminance(rgb) {
  const [r, g, b] = rgb.match(/[\d.]+/g).slice(0, 3).map((v) => {
    const c = Number(v) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

// The pages of a signed-in admin, by screenshot name.
const PAGES = [
  ['home', '/'],
  ['toys', '/toys'],
  ['toy', `/toys/${TOY}`],
  ['sharing', '/sharing'],
  ['members', '/members'],
  ['ledger', '/ledger'],
  ['account', '/account'],
  ['data', '/data'],
  ['certificate', '/help/certificate'],
  ['mqtt', '/settings/mqtt'],
  ['error', '/nope'],
];

async function shoot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

// Every page in one colour scheme and size: axe, a screenshot, the scheme
// really applied, and the navigation that fits the size.
async function tour(browser, scheme, view) {
  const size = `${view.width}x${view.height}`;
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: view, colorScheme: scheme });
  const page = await ctx.newPage();
  current = page;
  watch(page, `${scheme} ${size}`);
  for (const [name, url] of [['login', '/login'], ['join', '/join']]) {
    await page.goto(`${HUB}${url}`);
    await axe(page, `${url} ${scheme} ${size}`);
    await shoot(page, `${scheme}-${size}-${name}`);
  }
  await signIn(page);
  const phone = view.width < 640;
  for (const [name, url] of PAGES) {
    const res = await page.goto(`${HUB}${url}`);
    assert(res.status() === (name === 'error' ? 404 : 200), `${url}: status ${res.status()}`);
    await page.waitForLoadState('load');
    const colours = await page.evaluate(() => {
      const s = getComputedStyle(document.body);
      return { bg: s.backgroundColor, fg: s.color };
    });
    const bg = luminance(colours.bg);
    const fg = luminance(colours.fg);
    if (scheme === 'dark') assert(bg < 0.05 && fg > 0.6, `${url}: dark colours (${colours.bg} on ${colours.fg})`);
    else assert(bg > 0.8 && fg < 0.05, `${url}: light colours (${colours.bg} on ${colours.fg})`);
    const tabbar = page.locator('nav.tabbar');
    const topToys = page.locator('.top nav a[href="/toys"]');
    if (phone) {
      assert(await tabbar.isVisible(), `${url}: the tab bar shows on the phone`);
      assert(!(await topToys.isVisible()), `${url}: the top menu's links give way to the tab bar`);
      assert(await page.locator('.top [data-logout]').isVisible(), `${url}: Sign out stays at the top`);
      const box = await tabbar.boundingBox();
      assert(Math.abs(box.y + box.height - view.height) < 1, `${url}: the tab bar sits at the bottom (${box.y}+${box.height})`);
    } else {
      assert(!(await tabbar.isVisible()), `${url}: no tab bar on the desktop`);
      assert(await topToys.isVisible(), `${url}: the top menu on the desktop`);
    }
    await axe(page, `${url} ${scheme} ${size}`);
    await shoot(page, `${scheme}-${size}-${name}`);
  }
  step(`${scheme} ${size}: ${PAGES.length + 2} pages in ${scheme} colours, ${phone ? 'tab bar at the bottom' : 'menu at the top'}`);
  return { ctx, page };
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    timeout: LAUNCH_TIMEOUT_MS,
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--ignore-certificate-errors'],
  });
  try {
    // --- the setup page of a hub before setup: plain words first, the
    // command behind Details.
    {
      const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
      const page = await ctx.newPage();
      current = page;
      watch(page, 'setup');
      await page.goto(`${SETUP_HUB}/setup`);
      const command = page.getByText('sudo cat /var/lib/hearth/setup-code');
      assert(!(await command.isVisible()), 'the setup command is folded away');
      const intro = await page.locator('main > p:not(.status)').first().innerText();
      assert(/setup code/.test(intro) && !/sudo|\/var\//.test(intro), `a plain sentence first: ${intro}`);
      await page.locator('summary', { hasText: 'where to find the setup code' }).focus();
      await page.keyboard.press('Enter');
      assert(await command.isVisible(), 'Details opens with the keyboard and shows the command');
      for (const view of [PHONE, DESKTOP]) {
        await page.setViewportSize(view);
        for (const scheme of ['light', 'dark']) {
          await page.emulateMedia({ colorScheme: scheme });
          await axe(page, `/setup ${scheme} ${view.width}x${view.height}`);
          await shoot(page, `${scheme}-${view.width}x${view.height}-setup`);
        }
      }
      await ctx.close();
      step('setup page: a plain sentence, the command behind Details (keyboard)');
    }

    // --- every page, both schemes, both sizes
    for (const view of [DESKTOP, PHONE]) {
      for (const scheme of ['dark', 'light']) {
        const { ctx } = await tour(browser, scheme, view);
        await ctx.close();
      }
    }

    // --- the phone, in detail
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
    const page = await ctx.newPage();
    current = page;
    watch(page, 'phone');
    await signIn(page);

    // Nothing hides behind the tab bar: at the very bottom, the footer
    // ends above it; a page's own bottom bar adds to the room.
    const room = async () => page.evaluate(() => {
      window.scrollTo(0, document.scrollingElement.scrollHeight);
      const foot = document.querySelector('footer').getBoundingClientRect();
      const bar = document.querySelector('nav.tabbar').getBoundingClientRect();
      return { footBottom: foot.bottom, barTop: bar.top, pad: parseFloat(getComputedStyle(document.body).paddingBottom) };
    });
    let r = await room();
    assert(r.footBottom <= r.barTop + 0.5, `the footer ends above the tab bar (${r.footBottom} > ${r.barTop})`);
    await page.evaluate(() => document.documentElement.style.setProperty('--bottom-bar', '100px'));
    const r2 = await room();
    assert(Math.abs(r2.pad - r.pad - 100) < 0.5, `--bottom-bar adds to the page's bottom room (${r.pad} → ${r2.pad})`);
    await page.evaluate(() => document.documentElement.style.removeProperty('--bottom-bar'));
    step(`phone: the footer ends above the tab bar; --bottom-bar adds its room (${r.pad}px → ${r2.pad}px)`);

    // The unread count shows on the tab bar's Home, live.
    const tabCount = page.locator('nav.tabbar [data-unread-total]');
    const before = (await tabCount.isVisible()) ? Number(await tabCount.locator('[data-n]').innerText()) : 0;
    const wav = fs.readFileSync(env('FAKE_WAV'));
    const up = await toy('POST', '/toy/v1/recordings', {
      body: wav, headers: { 'content-type': 'audio/wav', 'idempotency-key': 'look-1' },
    });
    assert(up.status === 201, `the toy records (${up.status})`);
    await page.waitForFunction((n) => {
      const c = document.querySelector('nav.tabbar [data-unread-total]');
      return c && !c.hidden && c.querySelector('[data-n]').textContent === String(n);
    }, before + 1);
    const name = await page.locator('nav.tabbar a[href="/"]').innerText();
    assert(/Home/.test(name), `the tab names Home: ${name}`);
    step(`phone: the tab bar's Home shows the unread count live (${before} → ${before + 1})`);

    // Keyboard only: Tab reaches the tab bar; Enter follows the link.
    await page.goto(`${HUB}/`);
    let inBar = false;
    for (let i = 0; i < 150 && !inBar; i++) {
      await page.keyboard.press('Tab');
      inBar = await page.evaluate(() => !!document.activeElement.closest('nav.tabbar') && document.activeElement.getAttribute('href') === '/toys');
    }
    assert(inBar, 'Tab reaches the tab bar\'s Toys');
    const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(ring !== 'none', `the focused tab shows a focus ring (${ring})`);
    await Promise.all([page.waitForURL(`${HUB}/toys`), page.keyboard.press('Enter')]);
    assert(await page.locator('nav.tabbar a[aria-current="page"]').innerText() === 'Toys', 'the Toys tab is current');
    step('phone: the tab bar works with the keyboard');

    // Error pages: inside the layout, a plain headline, details folded.
    const res = await page.goto(`${HUB}/nope`);
    assert(res.status() === 404, 'a missing page is 404');
    assert((await page.locator('h1').innerText()) === 'This page does not exist', 'a plain headline');
    assert(await page.locator('nav.tabbar').isVisible(), 'the menu is there when signed in');
    const tech = page.getByText('404 Not Found: nothing here: GET /nope');
    assert(!(await tech.isVisible()), 'the technical words are folded away');
    await page.locator('.error-page summary').focus();
    await page.keyboard.press('Enter');
    assert(await tech.isVisible(), 'Details opens with the keyboard');
    step('error page: in the layout, plain headline, technical words behind Details');

    // The session list in words.
    await page.goto(`${HUB}/account`);
    const device = page.locator('#sessions li:has(.badge.on) strong');
    await device.waitFor();
    const words = await device.innerText();
    assert(words === 'Chrome on Linux', `this browser in words: ${words}`);
    step(`account: this session reads "${words}"`);
    // The retention choice is a styled field like the inputs, not the
    // browser's default control.
    const field = await page.evaluate(() => {
      const css = (q) => getComputedStyle(document.querySelector(q));
      const sel = css('#retention'), inp = css('input:not([type=hidden]):not([type=file])');
      return { appearance: sel.appearance, border: sel.borderTopColor, inputBorder: inp.borderTopColor,
        radius: sel.borderTopLeftRadius, inputRadius: inp.borderTopLeftRadius, height: parseFloat(sel.height) };
    });
    assert(field.appearance === 'none' && field.border === field.inputBorder && field.radius === field.inputRadius
      && field.height >= 44, `the retention choice is styled like the inputs: ${JSON.stringify(field)}`);
    step('account: the retention choice is a styled field');

    // The manifest, as the browser fetches it.
    await page.goto(`${HUB}/`);
    const manifest = await page.evaluate(async () => {
      const link = document.querySelector('link[rel="manifest"]');
      const r = await fetch(link.href);
      return { type: r.headers.get('content-type'), json: await r.json() };
    });
    assert(manifest.type === 'application/manifest+json', `manifest type ${manifest.type}`);
    assert(manifest.json.icons.some((i) => i.sizes === '512x512'), 'a 512 px icon');
    step('manifest: linked, served as application/manifest+json, with icons');

    // The first-run checklist: the toy is paired, so 1 of 4; the
    // certificate is ticked by hand, then the list is put away for good.
    const list = page.locator('#checklist');
    assert(await list.isVisible(), 'the admin sees the getting-started list');
    const count = page.locator('[data-checklist-count]');
    assert((await count.innerText()) === '1 of 4 done.', `the paired toy is ticked: ${await count.innerText()}`);
    assert(await page.locator('#checklist li.done a[href="/toys"]').count() === 1, 'the toy item is the done one');
    await page.locator('[data-checklist-mark="certificate_trusted"]').focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('[data-checklist-count]').textContent === '2 of 4 done.');
    await page.reload();
    assert((await count.innerText()) === '2 of 4 done.', 'the certificate stays ticked');
    await axe(page, '/ with the checklist ticked');
    await page.locator('[data-checklist-mark="dismissed"]').focus();
    await page.keyboard.press('Enter');
    await list.waitFor({ state: 'detached' });
    await page.reload();
    assert(await list.count() === 0, 'the list stays away after a reload');
    step('checklist: ticked from state and by hand, put away for good (keyboard)');
    await ctx.close();

    assertNoPageErrors();
    console.log(`axe summary: ${axeResults.length} pages, ${axeResults.reduce((n, [, v]) => n + v, 0)} violations`);
    console.log(`screenshots in ${SHOTS}: ${fs.readdirSync(SHOTS).filter((f) => f.endsWith('.png')).length}`);
    console.log('PASS look');
  } catch (e) {
    if (current) {
      const text = await current.locator('main').innerText().catch(() => '');
      console.log(`page ${current.url()}: ${text.slice(0, 600).replace(/\n+/g, ' | ')}`);
    }
    throw e;
  } finally {
    await browser.close();
  }
}

runMain(main);
