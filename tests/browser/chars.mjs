// Toys as characters (issue 15, sections 4 and 5) in a real Chromium, at
// 390×844 and 1280×800: the picture picker (mouse and keyboard) changes the
// toy's picture on its page and in the lists; a toy that reports 12 % is
// shown as needing charging, live, with an icon and words; the quiet-hours
// form saves, refuses equal times with a precise message, and a message
// sent during quiet hours is said to wait. axe on every page at each size.
// Started by tests/integration/browser.rs (`browser_characters`), with the
// hub's clock at 20:00 local time, and:
//   HUB_URL, USERNAME, PASSWORD, TOY_ID, TOY_NAME, TOY_CERT, TOY_KEY,
//   CA_FILE, FILE_WAV, and optionally SHOTS_DIR (screenshots of the toy
//   page at each size are kept there, as test artefacts)
// Prints one line per step and `SENT n` (messages sent); exits non-zero on
// the first failure.
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe, toyClient, pageErrors, watchErrors, assertNoPageErrors, runMain } from './common.mjs';

const HUB = env('HUB_URL');
const TOY = env('TOY_ID');
const NAME = env('TOY_NAME');
const toy = toyClient(HUB);
const SIZES = [{ width: 390, height: 844 }, { width: 1280, height: 800 }];

function watch(page, name) {
  watchErrors(page, name);
}

async function battery(percent) {
  const body = Buffer.from(JSON.stringify({ battery: percent }));
  const r = await toy('POST', '/toy/v1/status', { body, headers: { 'content-type': 'application/json' } });
  assert(r.status === 204, `the toy reports ${percent} % (${r.status})`);
}

// The visible warning of the toy on `page`: its words and whether its icon
// has a text alternative; waits until it shows.
async function warning(page) {
  const w = page.locator(`[data-battery-warning="${TOY}"]:not([hidden])`);
  await w.waitFor();
  const text = (await w.textContent()).replace(/\s+/g, ' ').trim();
  const alt = await w.locator('img').getAttribute('alt');
  return { text, alt, visible: await w.isVisible() };
}

async function headerPicture(page) {
  const img = page.locator(`main .toy-head img[data-toy-pic="${TOY}"]`);
  return { src: await img.getAttribute('src'), alt: await img.getAttribute('alt') };
}

async function main() {
  const browser = await chromium.launch({
    timeout: LAUNCH_TIMEOUT_MS,
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--ignore-certificate-errors'],
  });
  let sent = 0;
  try {
    for (const [i, size] of SIZES.entries()) {
      const label = `${size.width}×${size.height}`;
      const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: size });
      const page = await ctx.newPage();
      watch(page, label);
      await page.goto(`${HUB}/login`);
      await page.fill('#username', env('USERNAME'));
      await page.fill('#password', env('PASSWORD'));
      await Promise.all([page.waitForURL(`${HUB}/`), page.click('button[type=submit]')]);
      step(`${label}: signed in`);

      // --- low battery, live on the home page, then on the toys page.
      await battery(80);
      await page.reload();
      assert(await page.locator(`[data-battery-warning="${TOY}"]`).isHidden(), 'no warning at 80 %');
      await battery(12);
      const home = await warning(page);
      assert(new RegExp(`${NAME} needs charging: battery 12\\s%`).test(home.text), `home warns: "${home.text}"`);
      assert(home.alt === 'Warning:' && home.visible, `an icon with words, not colour alone (alt ${home.alt})`);
      step(`${label}: home page warns live: "${home.text}"`);
      await axe(page, `/ with a low battery (${label})`);
      await page.goto(`${HUB}/toys`);
      const list = await warning(page);
      assert(list.text === home.text, `the toys page warns too: "${list.text}"`);
      const cardPic = await page.locator(`#paired-list img[data-toy-pic="${TOY}"]`).getAttribute('alt');
      assert(cardPic && cardPic.length > 0, 'the card shows the picture, with alt text');
      await axe(page, `/toys with a low battery (${label})`);
      step(`${label}: toys page warns and shows the picture ("${cardPic}")`);

      // --- the picture picker on the toy page.
      await page.goto(`${HUB}/toys/${TOY}`);
      const tw = await warning(page);
      assert(tw.text === home.text, `the toy page warns: "${tw.text}"`);
      const before = await headerPicture(page);
      assert(before.src.startsWith('/static/toy-') && before.alt, `the header shows the picture (${JSON.stringify(before)})`);
      // The settings sit behind "Toy settings", above the conversation.
      await page.click('[data-settings] > summary');
      const group = page.getByRole('group', { name: 'Picture' });
      assert(await group.getByRole('radio').count() === 8, 'eight pictures to choose from');
      if (i === 0) {
        // With the mouse (a tap on a phone): the fox.
        await group.getByText('Fox', { exact: true }).click();
        await page.getByRole('button', { name: 'Save picture' }).click();
      } else {
        // With the keyboard only: arrow to the next picture, Tab to Save.
        await group.locator('input:checked').focus();
        await page.keyboard.press('ArrowRight');
        await page.keyboard.press('Tab');
        const focused = await page.evaluate(() => document.activeElement.textContent);
        assert(focused === 'Save picture', `Tab reaches Save (${focused})`);
        await page.keyboard.press('Enter');
      }
      await page.getByText('Picture saved.').waitFor();
      const chosen = await group.locator('input:checked').getAttribute('value');
      assert(chosen === (i === 0 ? 'fox' : 'whale'), `the ${i === 0 ? 'fox' : 'whale (after the fox)'} is chosen (${chosen})`);
      await page.waitForFunction(([id, want]) => document.querySelector(`.toy-head img[data-toy-pic="${id}"]`).getAttribute('src') === `/static/toy-${want}.svg`, [TOY, chosen]);
      const after = await headerPicture(page);
      step(`${label}: picture ${before.alt} → ${after.alt} (${after.src})`);
      await page.reload();
      assert((await headerPicture(page)).src === `/static/toy-${chosen}.svg`, 'the choice is stored');
      await page.click('[data-settings] > summary');

      // --- quiet hours: a precise refusal, then saved; they apply now (20:00).
      const quiet = page.getByRole('group', { name: 'Quiet hours' });
      const sw = quiet.getByRole('switch', { name: 'Quiet hours on' });
      if (await sw.isChecked()) {
        await sw.uncheck();
        await page.getByRole('button', { name: 'Save quiet hours' }).click();
        await page.getByText('Quiet hours are off').waitFor();
        await page.locator(`[data-quiet-now="${TOY}"][hidden]`).waitFor({ state: 'attached' });
        step(`${label}: quiet hours switched off`);
      }
      await sw.check();
      await quiet.getByLabel('From').fill('07:00');
      await quiet.getByLabel('Until').fill('07:00');
      await page.getByRole('button', { name: 'Save quiet hours' }).click();
      const refusal = page.getByText('quiet hours must end at another time than they start (both are 07:00)');
      await refusal.waitFor();
      assert(await refusal.isVisible(), 'the refusal shows');
      const box = await refusal.boundingBox();
      assert(box && box.y >= 0 && box.y + box.height <= size.height + 1, `next to the form, in view (${JSON.stringify(box)})`);
      step(`${label}: equal times refused, in view`);
      await quiet.getByLabel('From').fill('19:30');
      await page.getByRole('button', { name: 'Save quiet hours' }).click();
      await page.getByText('Quiet hours saved: from 19:30 until 07:00. They apply now.').waitFor();
      const note = page.locator(`[data-quiet-now="${TOY}"]:not([hidden])`);
      await note.waitFor();
      const noteText = (await note.textContent()).trim();
      assert(noteText.includes('is in quiet hours until 07:00'), `the header says so: "${noteText}"`);
      step(`${label}: quiet hours saved: "${noteText}"`);
      await axe(page, `/toys/${TOY} with quiet hours and a low battery (${label})`);
      if (process.env.SHOTS_DIR) {
        await page.screenshot({ path: `${process.env.SHOTS_DIR}/toy-${size.width}x${size.height}.png`, fullPage: true });
      }

      // --- sending during quiet hours says when the toy will hear it.
      await page.setInputFiles('[data-upload]', env('FILE_WAV'));
      await page.locator('[data-send]:not([disabled])').waitFor();
      await page.click('[data-send]');
      const said = page.getByText(/is in quiet hours until 07:00; it will hear this then\./);
      await said.waitFor();
      sent += 1;
      step(`${label}: sent during quiet hours: "${(await said.textContent()).trim()}"`);
      await ctx.close();
    }
    assertNoPageErrors();
    console.log(`SENT ${sent}`);
    console.log('PASS characters');
  } finally {
    await browser.close();
  }
}

runMain(main);
