// What the browser scripts share: their environment, step and failure
// lines, the axe check, and a toy that calls the hub over mutual TLS.
import fs from 'node:fs';
import https from 'node:https';
import { AxeBuilder } from '@axe-core/playwright';

/** The environment variable `k`, or `d`; neither is a failure. */
export const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`missing env ${k}`);
  return v;
};
/** How long Chromium may take to start: a first start on a fresh machine
 * (its font caches) under a loaded test run can pass Playwright's 30 s. */
export const LAUNCH_TIMEOUT_MS = 120000;
export const step = (msg) => console.log(`ok   ${msg}`);
export const fail = (msg) => { throw new Error(msg); };
export const assert = (cond, msg) => { if (!cond) fail(msg); };

/** Every page axe checked, with its number of violations. */
export const axeResults = [];

/** axe-core on `page`: 0 violations, or each one printed and a failure. */
export async function axe(page, label) {
  const r = await new AxeBuilder({ page }).analyze();
  axeResults.push([label, r.violations.length]);
  for (const v of r.violations) {
    console.log(`axe  ${label}: ${v.id} (${v.impact}): ${v.help}`);
    for (const n of v.nodes.slice(0, 5)) console.log(`       ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`);
  }
  assert(r.violations.length === 0, `axe: ${r.violations.length} violation(s) on ${label}`);
  step(`axe: 0 violations on ${label} (${r.passes.length} rules passed)`);
}

/**
 * A toy calling `hub` with the certificate, key and CA files named by
 * TOY_CERT, TOY_KEY and CA_FILE: `toy(method, path, { body, headers })`
 * resolves to `{ status, headers, body, json }`.
 */
export function toyClient(hub) {
  const tls = {
    cert: fs.readFileSync(env('TOY_CERT')),
    key: fs.readFileSync(env('TOY_KEY')),
    ca: fs.readFileSync(env('CA_FILE')),
    servername: 'localhost',
  };
  return (method, path, { body, headers } = {}) => {
    const url = new URL(path, hub);
    return new Promise((resolve, reject) => {
      const req = https.request({
        method, host: url.hostname, port: url.port, path: url.pathname + url.search,
        headers: { ...(headers || {}), ...(body ? { 'content-length': body.length } : {}) },
        ...tls,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          let json = null;
          if ((res.headers['content-type'] || '').includes('json')) {
            try { json = JSON.parse(buf.toString('utf8')); } catch { json = null; }
          }
          resolve({ status: res.statusCode, headers: res.headers, body: buf, json });
        });
      });
      req.on('error', reject);
      req.setTimeout(30000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
      if (body) req.write(body);
      req.end();
    });
  };
}

/** What the pages reported: console errors and uncaught exceptions. */
export const pageErrors = [];

/** Records `page`'s console errors and uncaught exceptions under `name`
 * in {@link pageErrors}, and gives it a 15 s default timeout. */
export function watchErrors(page, name) {
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${name}: console: ${m.text()}`); });
  page.on('pageerror', (e) => pageErrors.push(`${name}: pageerror: ${e.message}`));
  page.setDefaultTimeout(15000);
}

/** Prints the pages' errors as notes; fails on a CSP refusal or an
 * uncaught script error. */
export function assertNoPageErrors() {
  const csp = pageErrors.filter((e) => /Content Security Policy|Refused to/i.test(e));
  if (pageErrors.length) console.log(pageErrors.map((e) => `note ${e}`).join('\n'));
  assert(csp.length === 0, `CSP violations: ${csp.join('; ')}`);
  const uncaught = pageErrors.filter((e) => e.includes('pageerror'));
  assert(uncaught.length === 0, `uncaught script errors: ${uncaught.join('; ')}`);
}

/** Runs the script's `main`; when it fails, prints FAIL with the reason
 * and the pages' errors, and exits 1 (what the Rust side reads). */
export function runMain(main) {
  main().catch((e) => {
    console.log(`FAIL ${e.message}`);
    if (pageErrors.length) console.log(pageErrors.join('\n'));
    process.exit(1);
  });
}
