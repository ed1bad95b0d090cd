// Hearth browser end-to-end test: a real Chromium (fake microphone) against
// a real hub. Started by tests/integration/browser.rs with:
//   HUB_URL, USERNAME, PASSWORD, TOY_ID, TOY_CERT, TOY_KEY, CA_FILE, FAKE_WAV
//   optional: PAIR_ID, PAIR_CODE (a second toy waiting for confirmation),
//             OTHER_TOY (its id: a relative invited to TOY only must never see it),
//             EXPECT_REAL_AUDIO=1 (check durations and the Ogg container).
//             SETUP_HUB_URL, SETUP_CODE, BACKUP_FILE, BACKUP_PASSPHRASE (a second
//             hub before setup, its code, and a backup of the first hub: the
//             setup page is checked, a wrong file refused, the backup restored).
// Prints one line per step; exits non-zero on the first failure.
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { LAUNCH_TIMEOUT_MS, env, step, assert, axe, axeResults, toyClient, pageErrors, assertNoPageErrors, runMain } from './common.mjs';

const HUB = env('HUB_URL');
const toy = toyClient(HUB);
const USER = env('USERNAME');
const PASS = env('PASSWORD');
const TOY = env('TOY_ID');
const FAKE_WAV = env('FAKE_WAV');
const REAL_AUDIO = process.env.EXPECT_REAL_AUDIO === '1';
const SETUP_HUB = process.env.SETUP_HUB_URL;

// Console errors and CSP refusals fail the run.
let current = null; // the main page, for failure reports
function watch(page, name) {
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${name}: console: ${m.text()}`);
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
      `--use-file-for-fake-audio-capture=${FAKE_WAV}`,
      '--autoplay-policy=no-user-gesture-required',
      '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--ignore-certificate-errors',
    ],
  });
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
    await ctx.grantPermissions(['microphone'], { origin: HUB });
    const page = await ctx.newPage();
    current = page;
    watch(page, 'toy page');
    page.on('dialog', (d) => d.accept());
    page.setDefaultTimeout(15000);

    // --- restore from a backup on another hub's first-run setup page
    if (SETUP_HUB) {
      const setup = await ctx.newPage();
      watch(setup, 'setup page');
      setup.setDefaultTimeout(60000);
      await setup.goto(`${SETUP_HUB}/setup`);
      await axe(setup, '/setup');
      await setup.fill('#restore-code', env('SETUP_CODE'));
      await setup.fill('#restore-pass', env('BACKUP_PASSPHRASE'));
      await setup.setInputFiles('#restore-file', { name: 'notes.age', mimeType: 'application/octet-stream',
        buffer: Buffer.from('these are not the files you are looking for') });
      await setup.click('form[data-restore] button[type="submit"]');
      await setup.waitForFunction(() => /not a Hearth backup/.test(document.querySelector('#restore-result').textContent));
      step('the setup page refuses a file that is not a backup, in words');
      await axe(setup, '/setup (restore refused)');
      await setup.setInputFiles('#restore-file', env('BACKUP_FILE'));
      await setup.click('form[data-restore] button[type="submit"]');
      await setup.waitForURL(/\/login\?restored=1$/);
      assert(/back from its backup/.test(await setup.textContent('main')), 'the sign-in page says the household is back');
      await axe(setup, '/login (restored)');
      await setup.fill('#username', USER);
      await setup.fill('#password', PASS);
      await setup.click('form button[type="submit"]');
      await setup.waitForURL(`${SETUP_HUB}/`);
      step('restored from a backup on the setup page; the old account signs in');
      await setup.close();
    }

    // --- sign in
    await page.goto(`${HUB}/login`);
    await axe(page, '/login');
    await page.fill('#username', 'nobody');
    await page.fill('#password', 'wrong password here');
    await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
    assert(await page.locator('.error[role=alert]').count() === 1, 'a wrong password shows an error');
    await axe(page, '/login (error)');
    await page.fill('#username', USER);
    await page.fill('#password', PASS);
    await Promise.all([page.waitForURL(`${HUB}/`), page.click('button[type=submit]')]);
    step('signed in');
    assert(await page.locator('meta[name=csrf-token]').getAttribute('content'), 'csrf meta present');
    await axe(page, '/');

    // --- toys page (and pairing a second toy through the UI when offered)
    await page.goto(`${HUB}/toys`);
    await page.locator(`#paired-list li[data-toy="${TOY}"]`).waitFor();
    await page.locator('#paired-list li').first().locator('.badge').waitFor();
    assert(await page.locator('#paired-empty').isHidden(), 'paired-empty hidden when toys exist');
    if (process.env.PAIR_ID) {
      const card = page.locator(`#pending-list li[data-pairing="${process.env.PAIR_ID}"]`);
      await card.waitFor();
      assert(await page.locator('#pending-empty').isHidden(), 'pending-empty hidden');
      const input = card.locator('input[name=code]');
      assert(await input.getAttribute('inputmode') === 'numeric', 'code input numeric');
      assert(await input.getAttribute('autocomplete') === 'one-time-code', 'code input one-time-code');
      await axe(page, '/toys (pending)');
      const wrong = process.env.PAIR_CODE === '000000' ? '111111' : '000000';
      await input.fill(wrong);
      await card.locator('button[type=submit]').click();
      await card.locator('[data-attempts].is-error').waitFor();
      const t = await card.locator('[data-attempts]').textContent();
      assert(/\d+ attempts? left\./.test(t), `attempts_left shown (got "${t}")`);
      // Said once on the page, and once in the line (issue 15: it was
      // shown twice, and repeated itself inside the line).
      const said = (await page.locator('main').innerText()).match(/attempts? left/g) || [];
      assert(said.length === 1, `the attempts left are said once on the page (${said.length} times)`);
      assert((t.match(/\d+/g) || []).length === 1, `one count of attempts in "${t}"`);
      step(`wrong code refused, said once: "${t.trim()}"`);
      await input.fill(process.env.PAIR_CODE);
      await card.locator('button[type=submit]').click();
      await card.waitFor({ state: 'detached' });
      await page.locator('#paired-list li').nth(1).waitFor();
      await page.locator('#pending-empty').waitFor({ state: 'visible' });
      step('second toy paired from the toys page (list re-rendered live)');
    }
    await axe(page, '/toys');

    // --- account
    await page.goto(`${HUB}/account`);
    await page.locator('#sessions li').first().waitFor();
    // A display name signs this member's messages (issue 15).
    await page.fill('#display_name', 'Mum');
    await page.click('[data-display-name] button[type=submit]');
    await page.locator('.status', { hasText: 'signed Mum' }).waitFor();
    assert((await page.textContent('.top nav a[href="/account"]')).trim() === 'Mum', 'the menu shows the display name');
    step('display name set to "Mum"');
    assert(await page.locator('#sessions [data-session]').count() >= 1, 'sessions listed');
    await page.fill('#current_password', 'not my password at all');
    await page.fill('#new_password', 'a brand new long passphrase');
    await page.click('[data-password] button[type=submit]');
    await page.locator('[data-password] + .local-status.is-error').waitFor();
    step(`password change with a wrong current password refused: "${(await page.textContent('[data-password] + .local-status')).trim()}"`);
    await page.locator('#retention').selectOption('forever');
    await page.click('[data-household] button[type=submit]');
    await page.locator('[data-household] + .local-status.is-ok').waitFor();
    const hh = await page.evaluate(async () => (await fetch('/api/v1/household')).json());
    assert(hh.retention_days === null, `retention set to keep forever (got ${JSON.stringify(hh)})`);
    await page.locator('#retention').selectOption('30');
    await page.click('[data-household] button[type=submit]');
    await page.waitForFunction(async () => (await (await fetch('/api/v1/household')).json()).retention_days === 30);
    step('household retention changed to forever and back to 30 days from the account page');
    await axe(page, '/account');

    // --- your data (admin): a backup from the page, then checked there
    await page.goto(`${HUB}/data`);
    const BACKUP_PASS = 'a long backup passphrase';
    await page.fill('#backup-pass', BACKUP_PASS);
    await page.fill('#backup-pass2', 'not the same passphrase');
    await page.click('[data-backup] button[type=submit]');
    await page.locator('[data-backup] + .local-status.is-error').waitFor();
    step(`backup refused when the passphrases differ: "${(await page.textContent('[data-backup] + .local-status')).trim()}"`);
    await page.fill('#backup-pass2', BACKUP_PASS);
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 60000 }),
      page.click('[data-backup] button[type=submit]'),
    ]);
    const backupFile = await download.path();
    const head = fs.readFileSync(backupFile).subarray(0, 22).toString('latin1');
    assert(head === 'age-encryption.org/v1\n', `the backup is an age file (starts ${JSON.stringify(head)})`);
    step(`backup downloaded from the page as ${download.suggestedFilename()}`);
    await page.setInputFiles('#check-file', backupFile);
    await page.fill('#check-pass', BACKUP_PASS);
    await page.click('[data-check-backup] button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#check-result').textContent.startsWith('This backup is good'), null, { timeout: 60000 });
    step(`check this backup: "${(await page.textContent('#check-result')).trim()}"`);
    await axe(page, '/data');
    // --- Home Assistant (MQTT) settings, reached from the account page
    await page.goto(`${HUB}/account`);
    await page.click('a[href="/settings/mqtt"]');
    await page.locator('[data-mqtt-password]').waitFor();
    await page.fill('#mqtt-password', 'a broker password');
    await page.click('[data-mqtt-password] button[type=submit]');
    await page.locator('[data-mqtt-password] + .local-status.is-ok').waitFor();
    const mq = await page.evaluate(async () => (await fetch('/api/v1/mqtt')).json());
    assert(mq.password_set === true && mq.link === 'off', `MQTT password stored (got ${JSON.stringify(mq)})`);
    step('MQTT broker password saved from the Home Assistant page');
    await axe(page, '/settings/mqtt');
    // --- the sharing page (relay off): replies, shares, the mailbox form
    await page.goto(`${HUB}/sharing`);
    await page.locator('[data-relay-form]').waitFor();
    await page.waitForFunction(() => document.querySelector('[data-relay-state]').textContent.includes('off'));
    await axe(page, '/sharing');

    // --- certificate help (public)
    await page.goto(`${HUB}/help/certificate`);
    await axe(page, '/help/certificate');

    // --- a home page open in a second tab, to watch it update live
    const home = await ctx.newPage();
    watch(home, 'home page');
    home.setDefaultTimeout(15000);
    await home.goto(`${HUB}/`);

    // --- the toy page: record and send
    await page.goto(`${HUB}/toys/${TOY}`);
    await axe(page, `/toys/${TOY} (empty)`);
    const rec = page.locator('[data-record]');
    await rec.click();
    await page.locator('[data-record][aria-pressed=true]').waitFor();
    const recStarted = Date.now();
    await page.waitForFunction(() => /Recording 0:01 of 2:00/.test(document.querySelector('[data-rec-time]').textContent));
    step('elapsed time shown while recording');
    // Stop as soon as the page says 3 s were captured.
    await page.evaluate(() => new Promise((resolve) => {
      const t = setInterval(() => {
        if (/Recording 0:03/.test(document.querySelector('[data-rec-time]').textContent)) {
          clearInterval(t);
          document.querySelector('[data-record]').click();
          resolve();
        }
      }, 20);
    }));
    await page.locator('[data-preview]:not([hidden])').waitFor();
    const wallSecs = (Date.now() - recStarted) / 1000;
    const src = await page.getAttribute('[data-preview]', 'src');
    assert(src && src.startsWith('blob:'), 'preview is a blob: URL');
    const previewSecs = await page.evaluate(() => new Promise((resolve) => {
      const a = document.querySelector('[data-preview]');
      if (a.readyState >= 1 && isFinite(a.duration)) resolve(a.duration);
      else a.addEventListener('loadedmetadata', () => resolve(a.duration), { once: true });
    }));
    const uploaded = page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(`/api/v1/toys/${TOY}/messages`));
    await page.click('[data-send]');
    const h = await (await uploaded).allHeaders();
    assert(h['content-type'] === 'audio/wav', `sent as audio/wav (got ${h['content-type']})`);
    assert(/^[A-Za-z0-9._-]{1,64}$/.test(h['idempotency-key'] || ''), 'Idempotency-Key sent');
    assert(h['x-csrf-token'], 'X-CSRF-Token sent');
    step(`recorded ${previewSecs.toFixed(2)} s (preview) in ${wallSecs.toFixed(2)} s of wall time`);
    assert(previewSecs > 2.5 && previewSecs < 4.5, `recorded about 3 s (got ${previewSecs.toFixed(2)} s)`);
    await page.waitForFunction(() => Array.from(document.querySelectorAll('[data-recorder] .local-status')).some((e) => /^Sent/.test(e.textContent)));
    await page.locator('#timeline li.bubble.to_toy').first().waitFor();
    assert(await page.locator('#no-messages').isHidden(), 'empty note hidden once a message exists');
    const sentId = await page.locator('#timeline li.bubble.to_toy').first().getAttribute('data-id');
    const signed = (await page.textContent(`#msg-${sentId} .meta strong`)).trim();
    assert(signed === 'Mum', `the bubble is signed with the display name (got "${signed}")`);
    step(`sent; bubble ${sentId} shown with state ${await page.locator(`#msg-${sentId}`).getAttribute('data-state')}`);

    if (!REAL_AUDIO) {
      const r = await page.request.get(`${HUB}/api/v1/messages/${sentId}/audio`);
      const body = await r.body();
      const ch = body.readUInt16LE(22), rate = body.readUInt32LE(24), bits = body.readUInt16LE(34), bytes = body.readUInt32LE(40);
      assert(body.subarray(0, 4).toString('latin1') === 'RIFF' && ch === 1 && bits === 16 && bytes === body.length - 44,
        `uploaded a 16-bit mono WAV (ch ${ch}, bits ${bits}, data ${bytes}, total ${body.length})`);
      step(`uploaded WAV: ${rate} Hz mono 16-bit, ${(bytes / 2 / rate).toFixed(2)} s`);
    }

    // --- the toy fetches, plays and reports it
    const inbox = await toy('GET', '/toy/v1/inbox?wait=10');
    assert(inbox.status === 200, `inbox: ${inbox.status} ${inbox.body}`);
    const msgs = inbox.json.messages;
    assert(msgs.length === 1 && msgs[0].id === sentId, `inbox holds the one message (${JSON.stringify(msgs)})`);
    const dur = msgs[0].duration_ms;
    if (REAL_AUDIO) assert(dur >= 2500 && dur <= 4000, `duration_ms 2500..4000 (got ${dur})`);
    step(`toy inbox: 1 message, duration_ms ${dur}${REAL_AUDIO ? '' : ' (placeholder audio module: not checked)'}`);
    const audio = await toy('GET', msgs[0].audio);
    assert(audio.status === 200, `audio: ${audio.status}`);
    if (REAL_AUDIO) assert(audio.body.subarray(0, 4).toString('latin1') === 'OggS', 'audio is Ogg');
    step(`toy audio: ${audio.body.length} bytes, ${audio.headers['content-type']}, starts ${JSON.stringify(audio.body.subarray(0, 4).toString('latin1'))}`);
    await page.locator(`#msg-${sentId}[data-state=delivered]`).waitFor();
    step('page shows delivered live');
    const played = await toy('POST', `/toy/v1/messages/${sentId}/played`);
    assert(played.status === 204, `played: ${played.status}`);
    await page.locator(`#msg-${sentId}[data-state=played]`).waitFor();
    const ticks = await page.textContent(`#msg-${sentId} [data-ticks]`);
    assert(ticks.includes('✓✓') && ticks.includes('played'), `played ticks (got "${ticks}")`);
    step(`page shows played live: "${ticks.trim()}"`);

    // --- keep toggle (in the bubble's "More" menu)
    await page.click(`#msg-${sentId} [data-menu]`);
    await page.click(`#msg-${sentId} [data-keep]`);
    await page.locator(`#msg-${sentId} [data-keep][aria-pressed=true]`).waitFor();
    step('keep toggled');

    // --- the toy records; the open pages show it without reload
    const clip = fs.readFileSync(FAKE_WAV);
    const up = await toy('POST', '/toy/v1/recordings', {
      body: clip,
      headers: { 'content-type': 'audio/wav', 'idempotency-key': `e2e-${Date.now()}` },
    });
    assert(up.status === 201, `recording upload: ${up.status} ${up.body}`);
    const fromId = up.json.id;
    await page.locator(`#msg-${fromId}.from_toy .badge.new`).waitFor();
    step(`toy recording ${fromId} appeared live on the toy page, marked new`);
    await home.locator(`#new-recordings #msg-${fromId}`).waitFor();
    assert(await home.locator('#no-new').isHidden(), 'home empty note hidden');
    step('and live on the home page');
    for (const c of await page.locator('#timeline canvas.wave').all()) {
      const w = await c.evaluate((e) => e.width);
      assert(w > 0, 'waveform canvas drawn');
    }
    // Per-member unread counts (issue 15), live: the menu on both pages (on
    // this phone-sized screen, the tab bar at the bottom; the top menu's
    // copy is hidden), the toy's card on the home page and the toy page.
    const shows = (p, sel, n) => p.locator(`${sel}:not([hidden]) [data-n]`, { hasText: new RegExp(`^${n}$`) }).first().waitFor();
    await shows(home, 'nav.tabbar [data-unread-total]', 1);
    await shows(home, `[data-unread-toy="${TOY}"]`, 1);
    await shows(page, 'nav.tabbar [data-unread-total]', 1);
    await shows(page, `[data-unread-toy="${TOY}"]`, 1);
    step('unread counts went to 1 live (menu, toy card, toy page)');
    await axe(page, `/toys/${TOY} (with messages)`);
    await axe(home, '/ (with a new recording)');

    // --- hearing it clears "new" here and removes it from the home list
    await page.click(`#msg-${fromId} [data-play]`);
    await page.locator(`#msg-${fromId} .badge.new`).waitFor({ state: 'detached' });
    await home.locator(`#new-recordings #msg-${fromId}`).waitFor({ state: 'detached' });
    step('played by the parent: no longer new (page and home)');
    await home.locator('nav.tabbar [data-unread-total]').waitFor({ state: 'hidden' });
    await home.locator(`[data-unread-toy="${TOY}"]`).waitFor({ state: 'hidden' });
    await page.locator(`[data-unread-toy="${TOY}"]`).waitFor({ state: 'hidden' });
    step('and the unread counts went back to 0 live');

    // --- mark all heard on the toy page
    const up2 = await toy('POST', '/toy/v1/recordings', {
      body: clip,
      headers: { 'content-type': 'audio/wav', 'idempotency-key': `e2e2-${Date.now()}` },
    });
    assert(up2.status === 201, `second recording upload: ${up2.status}`);
    const fromId2 = up2.json.id;
    await page.locator(`#msg-${fromId2}.from_toy .badge.new`).waitFor();
    await shows(page, `[data-unread-toy="${TOY}"]`, 1);
    await shows(home, 'nav.tabbar [data-unread-total]', 1);
    await page.click(`[data-mark-heard="${TOY}"]`);
    await page.locator(`#msg-${fromId2} .badge.new`).waitFor({ state: 'detached' });
    await page.locator(`[data-unread-toy="${TOY}"]`).waitFor({ state: 'hidden' });
    await home.locator('nav.tabbar [data-unread-total]').waitFor({ state: 'hidden' });
    await home.locator(`#new-recordings #msg-${fromId2}`).waitFor({ state: 'detached' });
    step('Mark all heard cleared the toy page, the menu and the home list live');
    await axe(page, `/toys/${TOY} (after mark all heard)`);

    // --- delete a message (More, Delete, then Delete in the styled dialog)
    await page.click(`#msg-${fromId} [data-menu]`);
    await page.click(`#msg-${fromId} [data-delete]`);
    await page.click('dialog[data-ask] [data-ask-confirm]');
    await page.locator(`#msg-${fromId}`).waitFor({ state: 'detached' });
    step('message deleted');

    // --- rename (under Toy settings)
    await page.click('[data-settings] > summary');
    await page.fill('#toy-name', 'Bear the Brave');
    await page.click('[data-rename] button[type=submit]');
    await page.waitForFunction(() => document.querySelector('main h1').textContent === 'Bear the Brave');
    step('renamed');

    // --- invite a relative for this toy only; she joins in another browser
    await page.goto(`${HUB}/members`);
    await axe(page, '/members');
    await page.locator('#invite-role').selectOption('relative');
    await page.check(`form[data-invite] input[name=toys][value="${TOY}"]`);
    await page.click('form[data-invite] button[type=submit]');
    await page.locator('#invite-result:not([hidden])').waitFor();
    const code = (await page.textContent('[data-invite-code]')).trim();
    assert(/^\d{4}-\d{4}$/.test(code), `invitation code NNNN-NNNN (got "${code}")`);
    const joinUrl = await page.getAttribute('[data-invite-url]', 'href');
    assert(joinUrl.endsWith(`/join?code=${code}`), `join link carries the code (${joinUrl})`);
    assert(await page.locator('[data-invite-qr] svg[role=img] path').count() >= 1, 'QR code drawn as SVG');
    await axe(page, '/members (invitation shown)');
    step(`invitation ${code} created with link and QR code`);

    const ctx2 = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 } });
    const gran = await ctx2.newPage();
    watch(gran, 'relative');
    gran.setDefaultTimeout(15000);
    await gran.goto(joinUrl);
    assert(await gran.inputValue('#code') === code, 'the join page has the code filled in');
    await axe(gran, '/join');
    await gran.fill('#username', 'grandpa');
    await gran.fill('#password', 'pepper lantern orchard kite');
    await Promise.all([gran.waitForURL(/\/login\?joined=1$/), gran.click('button[type=submit]')]);
    await gran.fill('#username', 'grandpa');
    await gran.fill('#password', 'pepper lantern orchard kite');
    await Promise.all([gran.waitForURL(`${HUB}/`), gran.click('button[type=submit]')]);
    step('the relative joined with the code and signed in (second browser context)');
    const other = process.env.OTHER_TOY;
    for (const path of ['/', '/toys', `/toys/${TOY}`]) {
      await gran.goto(`${HUB}${path}`);
      const html = await gran.content();
      assert(html.includes(`/toys/${TOY}`) || path === `/toys/${TOY}`, `${path} shows the granted toy`);
      if (other) assert(!html.includes(other), `${path} never names the other toy ${other}`);
    }
    assert(await gran.locator('[data-remove]').count() === 0, 'a relative cannot remove the toy');
    assert(await gran.locator(`#msg-${sentId}`).count() === 1, 'the relative sees the granted toy\'s conversation');
    await axe(gran, `/toys/${TOY} (relative)`);
    if (other) {
      const r = await gran.goto(`${HUB}/toys/${other}`);
      assert(r.status() === 404, `another toy's page is 404 for a relative (got ${r.status()})`);
      const api = await gran.evaluate(async () => (await fetch('/api/v1/toys')).json());
      const ids = api.paired.map((t) => t.toy_id);
      assert(ids.length === 1 && ids[0] === TOY, `the relative's toy list is the granted toy only (${JSON.stringify(ids)})`);
    }
    step('the relative sees the granted toy only');
    await ctx2.close();

    // --- the ledger shows the invitation, the join and the sign-in
    await page.goto(`${HUB}/ledger`);
    const rows = await page.locator('table.ledger tbody').innerText();
    for (const a of ['invite_created', 'member_joined', 'sign_in']) assert(rows.includes(a), `ledger shows ${a}`);
    assert(rows.includes('grandpa'), 'ledger names the new member');
    await axe(page, '/ledger');
    await page.locator('#f-action').selectOption('member_joined');
    await Promise.all([page.waitForURL(/action=member_joined/), page.click('form.filters button[type=submit]')]);
    assert(await page.locator('table.ledger tbody tr').count() === 1, 'the action filter leaves the one join');
    assert(await page.getAttribute('a[download]', 'href') === '/api/v1/ledger.csv?action=member_joined', 'CSV link keeps the filter');
    step('ledger: invitation, join and sign-in listed; filter and CSV link work');

    // --- sign out
    await page.click('[data-logout]');
    await page.waitForURL(`${HUB}/login`);
    const after = await page.goto(`${HUB}/account`);
    assert(after.url().endsWith('/login'), `signed out (now at ${after.url()})`);
    step('signed out');

    assertNoPageErrors();
    console.log(`axe summary: ${axeResults.map(([l, n]) => `${l}=${n}`).join(', ')}`);
    console.log('PASS browser end-to-end');
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
