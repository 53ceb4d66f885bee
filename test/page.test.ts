// The status page in a real browser (Debian's chromium through
// playwright-core): both tenants, the charts drawn and moving while another
// process reads, search, an entry, a key with HTML in it shown as text, a
// delete through the UI checked in the segment, and a phone-sized window.
// SHMCACHE_SCREENSHOTS=1 writes the screenshots to docs/ (else to a temp folder).
import { existsSync, mkdirSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { runCli, seed, startApp, startServe } from './fixtures/cli-lib.mjs';
import { tempDir } from './helpers';

const CHROMIUM = '/usr/bin/chromium';
const XSS = '<img src=x onerror=alert(1)>';
const tmp = tempDir('shmcache-page-');
const shots = process.env.SHMCACHE_SCREENSHOTS === '1' ? join(__dirname, '..', 'docs') : mkdtempSync(join(tmpdir(), 'shmcache-shots-'));

let serve: Awaited<ReturnType<typeof startServe>>;
let app: Awaited<ReturnType<typeof startApp>>;
let context: BrowserContext;
let page: Page;
const dialogs: { type: string; message: string }[] = [];
const problems: string[] = [];
const dir = join(tmp.dir, 'tenants');

beforeAll(async () => {
  mkdirSync(dir);
  await seed(join(dir, 'site-a.shm'), {
    size: '4MB',
    entries: [
      [XSS, 'markup <b>bold</b> & <script>alert(2)</script>'],
      ['find:me:42', 'the value to find', 600_000],
      ['user:1', { name: 'Ada', roles: ['admin'] }],
      ['blob', { $bytes: Buffer.from('binary\x00data').toString('base64') }],
    ],
    bulk: 80,
    bulkPrefix: 'page:/articles/',
  });
  await seed(join(dir, 'site-b.shm'), { entries: [['b:greeting', 'hello from b']] });
  serve = await startServe([dir]);
  app = await startApp(join(dir, 'site-a.shm'), 'both', 'app:', 100); // another process reading and writing
  context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'shmcache-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('dialog', (d) => {
    dialogs.push({ type: d.type(), message: d.message() });
    void (d.type() === 'confirm' ? d.accept() : d.dismiss());
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The one 401 is the delete tried without the token, on purpose.
    if (m.type() === 'error' && !m.text().includes('status of 401')) problems.push(`console: ${m.text()}`);
  });
  page.on('request', (r) => {
    if (!r.url().startsWith(serve.url)) problems.push(`request off the server: ${r.url()}`);
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  await serve?.stop();
  const report = await app?.stop();
  expect(report?.errors).toBe(0);
});

/** The rates chart's pixels. */
const ratesPicture = () => page.$eval('#chart-rates canvas', (c: any) => c.toDataURL());

test.runIf(existsSync(CHROMIUM))('the status page in chromium', async () => {
  await page.goto(serve.url);
  // Both tenants in the switcher; the first is shown.
  await page.locator('#caches button', { hasText: 'site-a' }).waitFor();
  await page.locator('#caches button', { hasText: 'site-b' }).waitFor();
  await expect.poll(() => page.textContent('#cache-name')).toBe('site-a');

  // The charts: drawn with a size, moving while the app reads.
  for (const id of ['#chart-ratio', '#chart-rates']) {
    const size = await page.$eval(`${id} canvas`, (c: any) => [c.width, c.height]);
    expect(size[0]).toBeGreaterThan(100);
    expect(size[1]).toBeGreaterThan(50);
  }
  await expect.poll(async () => parseFloat((await page.textContent('#n-rate-hits')) ?? ''), { timeout: 15_000 }).toBeGreaterThan(0);
  const before = await ratesPicture();
  await expect.poll(ratesPicture, { timeout: 15_000 }).not.toBe(before);
  const fill = await page.$eval('#fill-used', (e: any) => e.style.width);
  expect(parseFloat(fill)).toBeGreaterThan(0);

  // A key with markup is text: no image element, no alert, the text visible.
  await page.fill('#prefix', '<img');
  await page.click('#search button');
  const xssButton = page.locator('#rows td.key button', { hasText: XSS });
  await xssButton.waitFor();
  expect(await xssButton.textContent()).toBe(XSS);
  expect(await page.locator('#rows img').count()).toBe(0);
  await xssButton.click();
  await expect.poll(() => page.textContent('#entry-key')).toBe(XSS);
  expect(await page.textContent('#entry-preview')).toBe('markup <b>bold</b> & <script>alert(2)</script>');
  expect(await page.locator('main img, main b, main script').count()).toBe(0);

  // Search by prefix, open the entry.
  await page.fill('#prefix', 'find:');
  await page.click('#search button');
  const row = page.locator('#rows td.key button', { hasText: 'find:me:42' });
  await row.waitFor();
  expect(await page.locator('#rows tr').count()).toBe(1);
  await row.click();
  await expect.poll(() => page.textContent('#entry-preview')).toBe('the value to find');
  expect(await page.textContent('#entry-type')).toBe('string');

  // Delete without the token: refused (401), nothing deleted.
  await page.click('#delete');
  await expect.poll(() => page.textContent('#message')).toContain('token');
  expect((await runCli(['get', join(dir, 'site-a.shm'), 'find:me:42'])).code).toBe(0);

  // With the token (kept in sessionStorage), the confirmation accepted: gone from the segment.
  await page.fill('#token', serve.token);
  await page.click('#token-form button');
  expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('shmcache-token'))).toBe(serve.token);
  await page.click('#delete');
  await expect.poll(() => page.textContent('#message')).toBe('Deleted.');
  expect((await runCli(['get', join(dir, 'site-a.shm'), 'find:me:42'])).code).toBe(1);
  await expect.poll(() => page.textContent('#rows')).toContain('No key starts with this prefix.');
  const confirms = dialogs.filter((d) => d.type === 'confirm');
  expect(confirms).toHaveLength(2);
  expect(confirms[0]!.message).toContain('"find:me:42"'); // quoted: a key cannot reword the dialog

  // Paging through the rest.
  await page.fill('#prefix', 'page:');
  await page.click('#search button');
  await expect.poll(() => page.textContent('#page-info')).toBe('1–50 of 80');
  await page.click('#next');
  await expect.poll(() => page.textContent('#page-info')).toBe('51–80 of 80');

  // The other tenant.
  await page.click('#caches button:has-text("site-b")');
  await expect.poll(() => page.textContent('#cache-name')).toBe('site-b');
  await page.locator('#rows td.key button', { hasText: 'b:greeting' }).waitFor();

  // Back to site-a for the screenshot, an entry open.
  await page.click('#caches button:has-text("site-a")');
  await page.fill('#prefix', 'page:/articles/1');
  await page.click('#search button');
  await page.locator('#rows td.key button', { hasText: 'page:/articles/10' }).first().click();
  await expect.poll(() => page.textContent('#entry-preview')).toMatch(/^value /);
  await page.screenshot({ path: join(shots, 'status-page.png'), fullPage: true });

  // A phone-sized window: nothing wider than the screen, charts still drawn.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await expect.poll(() => page.textContent('#cache-name')).toBe('site-a');
  await page.locator('#chart-rates canvas').waitFor();
  await expect
    .poll(() => page.$eval('#chart-rates canvas', (c: any) => c.getBoundingClientRect().width), { timeout: 10_000 })
    .toBeLessThanOrEqual(390);
  await page.evaluate(() => (globalThis as any).dispatchEvent(new Event('resize')));
  expect(await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await page.locator('#rows td.key button').first().waitFor();
  await page.evaluate(() => (globalThis as any).scrollTo(0, 0)); // a reload keeps the scroll position
  await page.screenshot({ path: join(shots, 'status-page-phone.png'), fullPage: false });
  for (const f of ['status-page.png', 'status-page-phone.png']) expect(statSync(join(shots, f)).size).toBeGreaterThan(10_000);

  // A malformed location hash: no page error, the first cache shown.
  await page.goto(serve.url + '#%E0%A4%A');
  await expect.poll(() => page.textContent('#cache-name')).toBe('site-a');

  expect(dialogs.filter((d) => d.type !== 'confirm')).toEqual([]); // no alert fired
  expect(problems).toEqual([]);
});
