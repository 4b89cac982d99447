/// <reference lib="dom" />
// (The DOM library types the functions that puppeteer runs inside the page.)
// The web console at `/`, in a real browser: Debian's chromium driven by puppeteer-core against a
// real cluster. It proves that the page shows every shard as /status does, that a put made in the
// page is read back through the API, that a failover clicked in the page (with the admin token
// typed in) changes the shard's epoch on the page, that API errors reach the user, that the token
// is kept nowhere but the password field, and that the static files carry their content types and
// a CSP under which the page runs without a single violation. Browser and cluster are removed
// even when a test fails. CONSOLE_SCREENSHOT=<path> also saves a screenshot (docs/console.png).
import { chromiumArgs, ensureChromium } from '@shardkv/tools';
import puppeteer, { type Browser, type ConsoleMessage, type Page } from 'puppeteer-core';
import { get, http, shardsInSync, shardView, startCluster, waitFor, type TestCluster } from './helpers';

/** apt-get may have to fetch chromium here when the global set-up could not. */
const SETUP_TIMEOUT_MS = 12 * 60_000;
/** The page polls once a second; a change must show within a few polls on a loaded machine. */
const PAGE_WAIT_MS = 10_000;

let cluster: TestCluster | undefined;
let browser: Browser | undefined;
let page: Page;
/** Script errors and console errors (CSP violations among them) seen by the page. */
const pageProblems: string[] = [];

beforeAll(async () => {
  const executablePath = await ensureChromium();
  cluster = await startCluster();
  browser = await puppeteer.launch({ executablePath, headless: true, args: chromiumArgs() });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('pageerror', (err) => pageProblems.push(`pageerror: ${String(err)}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !isHttpStatus(msg)) pageProblems.push(`console: ${msg.text()}`);
  });
  await page.goto(`${cluster.router.url}/`, { waitUntil: 'load' });
}, SETUP_TIMEOUT_MS);

afterAll(async () => {
  // Each is closed on its own: a browser that fails to close must not leave the cluster running.
  await browser?.close().catch(() => undefined);
  await cluster?.stop();
}, 60_000);

/**
 * Chromium logs every 4xx answer as an error: the tests provoke some on purpose (a missing key, a
 * wrong token) and the browser asks for a /favicon.ico the router does not have. The page shows
 * those answers itself; what is left to catch here is script errors and CSP refusals.
 */
function isHttpStatus(msg: ConsoleMessage): boolean {
  return msg.text().startsWith('Failed to load resource: the server responded with a status of');
}

const url = () => cluster!.router.url;
const text = (selector: string) => page.$eval(selector, (el) => el.textContent ?? '');
const waitForText = (selector: string, pattern: RegExp) =>
  page.waitForFunction((s, source) => new RegExp(source).test(document.querySelector(s)?.textContent ?? ''), { timeout: PAGE_WAIT_MS }, selector, pattern.source);

async function setField(selector: string, value: string): Promise<void> {
  await page.$eval(selector, (el) => ((el as HTMLInputElement).value = ''));
  await page.type(selector, value);
}

describe('web console', () => {
  test('serves its files with their content types and a CSP that allows no inline script', async () => {
    const html = await http('GET', `${url()}/`);
    expect(html.status).toBe(200);
    const res = await fetch(`${url()}/`);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    // Every script is a file: no <script> without a src, no on* handler attributes.
    expect(String(html.body)).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=/i);
    for (const [path, type] of [['/console/console.js', 'text/javascript; charset=utf-8'], ['/console/console.css', 'text/css; charset=utf-8']]) {
      const r = await fetch(`${url()}${path}`);
      expect({ path, status: r.status, type: r.headers.get('content-type') }).toEqual({ path, status: 200, type });
    }
    // Nothing else is served from the folder, the router stays case-sensitive, and `/` is GET only.
    expect((await http('GET', `${url()}/console/index.html`)).body.error.code).toBe('route_not_found');
    expect((await http('GET', `${url()}/Console/console.js`)).body.error.code).toBe('route_not_found');
    expect((await http('POST', `${url()}/`, {})).status).toBe(405);
  });

  test('shows every shard with its leader, follower, epoch, in-sync flag and lag, and the coordinator', async () => {
    await waitFor('all shards in sync', cluster!, () => shardsInSync(cluster!));
    await page.waitForFunction((n) => document.querySelectorAll('#shards tbody tr').length === n, { timeout: PAGE_WAIT_MS }, cluster!.shards.length);
    for (const { id } of cluster!.shards) {
      const view = await shardView(cluster!, id);
      await waitForText(`tr[data-shard="${id}"] td.in-sync`, /^yes$/);
      const row = (cls: string) => text(`tr[data-shard="${id}"] td.${cls}`);
      expect({ id, leader: await row('leader'), follower: await row('follower'), epoch: await row('epoch'), lag: await row('lag') }).toEqual({
        id,
        leader: expect.stringContaining(view.leader.url),
        follower: expect.stringContaining(view.follower.url),
        epoch: String(view.epoch),
        lag: expect.stringMatching(/^\d+$/),
      });
    }
    await waitForText('#coordinator', /generation \d+/);
    expect(await text('#live')).toMatch(/^live/);
  });

  test('a put made in the page is read back through the API; a missing key shows the API error', async () => {
    await setField('#kv-key', 'console:greeting');
    await setField('#kv-value', 'hello from chromium');
    await page.click('#kv-put');
    await waitForText('#kv-result', /"seq":\d+/);
    expect((await get(url(), 'console:greeting')).body).toEqual({ key: 'console:greeting', value: 'hello from chromium', version: expect.any(Number) });

    await setField('#kv-key', 'console:never-written');
    await page.click('#kv-get');
    await waitForText('#kv-result', /^key_not_found: /);
    expect(await page.$eval('#kv-result', (el) => el.classList.contains('error'))).toBe(true);
  });

  test('a failover clicked with the admin token typed in changes the epoch on the page; without it the error is shown', async () => {
    await waitFor('all shards in sync', cluster!, () => shardsInSync(cluster!));
    const id = cluster!.shards[1]!.id;
    const before = await shardView(cluster!, id);
    const failoverButton = `tr[data-shard="${id}"] button.failover`;

    await setField('#token', '');
    await page.click(failoverButton);
    await waitForText('#admin-result', /^no_token: /);
    await setField('#token', 'not-the-token');
    await page.click(failoverButton);
    await waitForText('#admin-result', /^unauthorized: /);

    await setField('#token', cluster!.token!);
    await page.click(failoverButton);
    await waitForText('#admin-result', new RegExp(`^${id}: failed over`));
    await page.waitForFunction((sel, e) => Number(document.querySelector(sel)?.textContent) > e, { timeout: PAGE_WAIT_MS }, `tr[data-shard="${id}"] td.epoch`, before.epoch);
    const after = await shardView(cluster!, id);
    expect(after.leader.url).toBe(before.follower.url);
    await waitForText(`tr[data-shard="${id}"] td.leader`, new RegExp(escapeRegExp(after.leader.url)));

    // The token is in the field only: not in the markup, not in web storage.
    const kept = await page.evaluate(() => document.documentElement.outerHTML + JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    expect(kept).not.toContain(cluster!.token!);
    await waitFor('all shards in sync after the failover', cluster!, () => shardsInSync(cluster!));
    await screenshotIfAsked();
  });

  test('the page ran without script errors or CSP violations', () => {
    expect(pageProblems).toEqual([]);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** For the README's picture: the page as a user sees it, once the failover's epoch has settled. */
async function screenshotIfAsked(): Promise<void> {
  const path = process.env['CONSOLE_SCREENSHOT'];
  if (path === undefined || path === '') return;
  await setField('#token', '');
  await new Promise((r) => setTimeout(r, 1500));
  await page.screenshot({ path: path as `${string}.png`, fullPage: true });
}
