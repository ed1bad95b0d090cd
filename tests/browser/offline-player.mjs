// The export's offline player: opens the unpacked export's index.html from
// file:// in a real Chromium with the network cut off, checks that it lists
// every clip and plays the first one to its end. Started by
// tests/integration/yourdata.rs with INDEX_HTML (the file) and EXPECT_CLIPS.
// Prints one line per step; exits non-zero on the first failure.
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS } from './common.mjs';

const INDEX = process.env.INDEX_HTML;
const EXPECT = Number(process.env.EXPECT_CLIPS || '1');
const fail = (msg) => { console.error(`FAIL ${msg}`); process.exit(1); };
if (!INDEX) fail('missing env INDEX_HTML');

const browser = await chromium.launch({
  timeout: LAUNCH_TIMEOUT_MS,
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--autoplay-policy=no-user-gesture-required',
    '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
});
try {
  const ctx = await browser.newContext({ offline: true });
  const page = await ctx.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pathToFileURL(INDEX).href);
  const count = await page.locator('audio').count();
  if (count !== EXPECT) fail(`expected ${EXPECT} players, found ${count}`);
  console.log(`ok   ${count} players listed`);
  const result = await page.evaluate(() => new Promise((resolve) => {
    const a = document.querySelector('audio');
    const done = (what) => resolve({ what, duration: a.duration, time: a.currentTime, error: a.error && a.error.code, src: a.currentSrc });
    a.addEventListener('ended', () => done('ended'));
    a.addEventListener('error', () => done('error'));
    setTimeout(() => done('timeout'), 20000);
    a.play().catch((e) => resolve({ what: 'play() refused: ' + e.message }));
  }));
  if (result.what !== 'ended') fail(`the first clip did not play to its end: ${JSON.stringify(result)}`);
  if (!(result.duration > 0.5)) fail(`odd duration ${result.duration}`);
  const remote = requests.filter((u) => !u.startsWith('file:'));
  if (remote.length) fail(`the player asked the network: ${remote.join(', ')}`);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(`ok   played ${result.src.split('/').pop()} from file:// offline (${result.duration.toFixed(2)} s)`);
} finally {
  await browser.close();
}
