/**
 * The migrations page, end to end in a real headless Chromium (Debian's
 * package, driven by playwright-core): log in, see the precheck's verdict
 * before submitting, start a migration of a lab guest from the form, watch
 * its bar move over the event stream to 100% and `finished`, and cancel
 * another one with the page's button. Screenshots go to test-results/.
 */
import { mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GUEST_DIRTY, GUEST_TINY } from '../lab/config.js';
import { hostAddress, hostUri, labUp, resetGuest } from '../lab/lab.js';
import { createHypervisor } from '../shared/libvirt/index.js';
import { stateOn, withConnection } from './helpers/guests.js';
import { api, startService, TOKENS, type Service } from './helpers/service.js';

const CHROMIUM = process.env.KVM_MIGRATE_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = new URL('../test-results/', import.meta.url).pathname;
const hv = createHypervisor();
let svc: Service;
let browser: Browser;
const problems: string[] = [];

async function loggedIn(token: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  // A refused API call (422 from a precheck) is the page working; a missing asset or a 5xx is not.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    const asset = ['document', 'script', 'stylesheet', 'image', 'font'].includes(r.request().resourceType());
    if ((asset && r.status() >= 400) || r.status() >= 500) problems.push(`${r.status()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    // Event streams are closed by the page itself when their task ends.
    if (r.resourceType() !== 'eventsource') problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  // An unauthenticated visit is sent to the login page, which comes back to the page after.
  await page.goto(`${svc.url}/`);
  await page.waitForURL(/\/login/);
  await page.locator('input[name=token]').fill(token);
  await page.locator('input[name=token]').press('Enter');
  await page.waitForURL(`${svc.url}/`);
  await page.getByTestId('who').filter({ hasText: /\w/ }).waitFor();
  return page;
}

/** The first row's bar and status, as the page shows them. */
async function firstRow(page: Page) {
  const row = page.locator('tr[data-task]').first();
  return {
    id: await row.getAttribute('data-task'),
    status: await row.getByTestId('status').textContent(),
    percent: Number(await row.getByTestId('bar').getAttribute('aria-valuenow')),
  };
}

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  await labUp();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 2 });
  await resetGuest(GUEST_TINY);
  svc = await startService({ KVM_MIGRATE_LIBVIRT_SOURCE_URI: hostUri('host1') });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await svc?.stop();
  await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
  await resetGuest(GUEST_TINY);
});

describe('the migrations page', () => {
  it('shows the precheck blockers before anything is submitted, and Migrate stays off', async () => {
    const page = await loggedIn(TOKENS.operator);
    await page.getByTestId('vm').fill(GUEST_TINY);
    // The guest's own host as destination: the precheck's same-host blocker.
    await page.getByTestId('destination').fill(hostAddress('host1'));
    const blockers = page.getByTestId('blockers');
    await blockers.waitFor({ timeout: 30_000 });
    expect(await blockers.textContent()).toMatch(/KCHVM0055E/);
    expect(await page.getByTestId('migrate').isDisabled()).toBe(true);
    expect((await api(svc.url, 'GET', '/tasks')).body).toEqual([]);
    await page.close();
  });

  it('migrates a lab guest from the form: the bar moves over the event stream to 100% and the task is finished', async () => {
    const page = await loggedIn(TOKENS.operator);
    await page.getByTestId('vm').fill(GUEST_DIRTY);
    await page.getByTestId('destination').fill(hostAddress('host2'));
    // A bandwidth cap so the copy lasts long enough (about 8 s) to watch it move.
    await page.getByTestId('bandwidth').fill('8');
    await page.locator('#precheck.ready').waitFor({ timeout: 30_000 });
    expect(await page.getByTestId('precheck').textContent()).toMatch(/^Ready: \d+ checks passed/);
    await page.getByTestId('migrate').click();

    const seen: number[] = [];
    let row = await firstRow(page);
    const deadline = Date.now() + 90_000;
    while (row.status !== 'finished' && Date.now() < deadline) {
      if (row.status === 'running') seen.push(row.percent);
      if (seen.filter((p) => p > 30).length === 1) await page.screenshot({ path: `${SHOTS}migrations-page-running.png`, fullPage: true });
      await page.waitForTimeout(200);
      row = await firstRow(page);
    }
    expect(row.status).toBe('finished');
    expect(row.percent).toBe(100);
    // The bar moved: several distinct values strictly between 0 and 100, never backwards.
    const moving = seen.filter((p) => p > 0 && p < 100);
    expect(new Set(moving).size).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));

    // The detail panel: final figures, the stage history, and the chart drawn from the stored series.
    const task = (await api(svc.url, 'GET', `/tasks/${row.id}`)).body;
    expect(task.status).toBe('finished');
    await expect.poll(() => page.locator('[data-fact=downtime]').textContent()).toBe(`${task.progress.downtimeMs} ms`);
    expect(await page.getByTestId('history').locator('li').allTextContents()).toEqual(expect.arrayContaining([expect.stringMatching(/finish done: running and persistent on 127\.0\.0\.12$/)]));
    const series = (await api(svc.url, 'GET', `/tasks/${row.id}/series`)).body;
    expect(series.points.length).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#chart canvas').count()).toBe(1);
    await page.screenshot({ path: `${SHOTS}migrations-page.png`, fullPage: true });

    // And libvirt agrees: the guest runs on host2 and is gone from host1.
    expect(await withConnection(hv, hostUri('host2'), (c) => stateOn(c, GUEST_DIRTY))).toEqual({ state: 'running', persistent: true });
    expect(await withConnection(hv, hostUri('host1'), (c) => stateOn(c, GUEST_DIRTY))).toBeNull();
    await page.close();
  });

  it("cancels a running migration with the row's button: killed, the guest still on the source", async () => {
    // A guest that dirties memory faster than an 8 MiB/s link copies: it runs until cancelled.
    await resetGuest(GUEST_DIRTY, { dirtyRateMiBs: 64 });
    const page = await loggedIn(TOKENS.operator);
    await page.getByTestId('vm').fill(GUEST_DIRTY);
    await page.getByTestId('destination').fill(hostAddress('host2'));
    await page.getByTestId('bandwidth').fill('8');
    await page.locator('#precheck.ready').waitFor({ timeout: 30_000 });
    await page.getByTestId('migrate').click();
    await expect.poll(async () => (await firstRow(page)).percent, { timeout: 60_000 }).toBeGreaterThan(0);
    await page.locator('tr[data-task]').first().getByTestId('cancel').click();
    await expect.poll(async () => (await firstRow(page)).status, { timeout: 60_000 }).toBe('killed');
    expect(await withConnection(hv, hostUri('host1'), (c) => stateOn(c, GUEST_DIRTY))).toEqual({ state: 'running', persistent: true });
    expect(await withConnection(hv, hostUri('host2'), (c) => stateOn(c, GUEST_DIRTY))).toBeNull();
    await page.close();
  });

  it('gives a viewer the list and the details but no form and no cancel button', async () => {
    const page = await loggedIn(TOKENS.viewer);
    await page.locator('tr[data-task]').first().waitFor();
    expect(await page.getByTestId('who').textContent()).toMatch(/viewer/);
    expect(await page.getByTestId('vm').isDisabled()).toBe(true);
    expect(await page.getByTestId('cancel').count()).toBe(0);
    await page.close();
  });

  it('ran without script errors or refused resources', () => {
    expect(problems).toEqual([]);
  });
});
