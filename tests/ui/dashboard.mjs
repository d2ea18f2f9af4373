// Drives the dashboard in real Chromium (Debian's, through playwright-core) for
// tests/integration/test_ui.py, which runs the daemon. Configuration comes as JSON in
// BH_UI_TEST: {base, key, viewer, tenantToken, tenant, other, otherInstance, mode, artifacts,
// workload, chromium, nodeModules}.
// What the browser cannot do itself (claim out of band, fire the webhook, restart the
// daemon) it asks the Python side for on stdout ("REQUEST <what> [arg]") and waits for
// "ok" on stdin. Progress lines start with "STEP"; any failure exits non-zero with the reason.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const cfg = JSON.parse(process.env.BH_UI_TEST);
const { chromium } = createRequire(join(cfg.nodeModules, 'x.js'))('playwright-core');
const WAIT = 60000;

const lines = createInterface({ input: process.stdin });
const replies = [];
let waiter = null;
lines.on('line', (l) => (waiter ? (waiter(l), (waiter = null)) : replies.push(l)));
function ask(what) {
  console.log(`REQUEST ${what}`);
  return new Promise((resolve, reject) => {
    const done = (l) => (l === 'ok' ? resolve() : reject(new Error(`${what}: ${l}`)));
    if (replies.length) done(replies.shift());
    else waiter = done;
  });
}
const step = (s) => console.log(`STEP ${s}`);
const shot = (page, name) => page.screenshot({ path: join(cfg.artifacts, `${name}.png`), fullPage: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function login(page, token) {
  await page.goto(`${cfg.base}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('[data-live="live"]').waitFor({ timeout: WAIT });
}

const claimsRow = (page, tenant) =>
  page.locator(`li[data-workload="${cfg.workload}"] table.claims tr[data-tenant="${tenant}"]`);
const hibernatedRow = (page, tenant) =>
  page.locator(`li[data-workload="${cfg.workload}"] table.hibernated tr[data-tenant="${tenant}"]`);

async function idleLeft(page, tenant) {
  const v = await page.getByRole('meter', { name: `idle time left for ${tenant}` }).getAttribute('aria-valuenow');
  return Number(v);
}

const instanceId = (page) => decodeURIComponent(new URL(page.url()).hash.split('/')[2] || '');
const points = (page) => page.locator('dl.stats').getAttribute('data-points').then(Number);
async function chartPoints(page, title) {
  const text = await page.locator('figcaption', { hasText: title }).textContent();
  return Number((text.match(/\((\d+) points\)/) || [])[1] || 0);
}

// The instance page is live without polling: for 10 s, while the instance writes new log
// lines and the daemon takes new samples, the page shows them and asks the daemon for
// nothing again (the browser's request log); after a reload the charts open with history.
async function livePushed(page) {
  const iid = instanceId(page);
  const requests = [];
  const onRequest = (r) => requests.push({ method: r.method(), url: r.url(), at: Date.now() });
  page.on('request', onRequest);
  await page.locator('[data-watch="live"]').waitFor({ timeout: WAIT });
  await page.locator('pre.log').filter({ hasNotText: 'connecting…' }).waitFor({ timeout: WAIT });
  const start = Date.now();
  const first = await points(page);
  let lines = 0;
  // A line, then the next sample, until 10 s passed and two samples came.
  while (Date.now() - start < 10000 || (await points(page)) < first + 2) {
    const line = `tick-${lines++}`;
    await ask(`say ${iid} ${line}`);
    await page.locator('pre.log').filter({ hasText: line }).waitFor({ timeout: WAIT });
    await page.waitForFunction((n) => Number(document.querySelector('dl.stats').dataset.points) > n,
      await points(page), { timeout: WAIT });
  }
  const end = Date.now();
  page.off('request', onRequest);
  const during = requests.filter((r) => r.at >= start && r.at <= end && r.method === 'GET');
  console.log(`PUSHED ${lines} log lines, samples ${first} -> ${await points(page)} in ${end - start} ms; GETs meanwhile: ${during.map((r) => r.url).join(' ') || 'none'}`);
  check(!during.some((r) => /\/(stats|logs|samples)(\?|$)/.test(r.url)), 'no GET of stats, logs or samples while the page is open');
  const urls = during.map((r) => r.url);
  check(new Set(urls).size === urls.length, `no URL fetched twice: ${urls.join(' ')}`);

  step('after a reload the charts open with the recent past');
  const before = await chartPoints(page, 'Memory');
  const reloaded = Date.now();
  await page.reload();
  await page.locator('[data-watch="live"]').waitFor({ timeout: WAIT });
  // History, not live samples: more points than live sampling (one per 5 s) could bring
  // since the reload.
  await page.waitForFunction((n) => {
    const c = [...document.querySelectorAll('figcaption')].find((f) => f.textContent.startsWith('Memory'));
    const m = c && c.textContent.match(/\((\d+) points\)/);
    return m && Number(m[1]) >= n;
  }, Math.max(3, before - 1), { timeout: WAIT });
  const after = await chartPoints(page, 'Memory');
  const live = Math.floor((Date.now() - reloaded) / 5000) + 1;
  console.log(`HISTORY ${before} points before the reload, ${after} after (${Date.now() - reloaded} ms)`);
  check(after > live, `the memory chart opened with history (${after} points, live could bring ${live})`);
  await page.locator('pre.log').filter({ hasText: 'tick-0' }).waitFor({ timeout: WAIT });
}

async function admin(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => console.log(`PAGEERROR ${e.message}`));
  step('login with the admin key');
  await login(page, cfg.key);
  check(!(await page.content()).includes(cfg.key), 'the token is nowhere in the page');
  // Set once: a reload would lose it, so its presence later proves updates came live.
  await page.evaluate(() => (window.__bhNoReload = 1));

  step('claim from the form');
  await page.getByLabel('Tenant ID', { exact: true }).fill('alice');
  await page.getByLabel('Workload', { exact: true }).selectOption(cfg.workload);
  await page.getByRole('button', { name: 'Claim', exact: true }).click();
  await claimsRow(page, 'alice').locator('text=Active').waitFor({ timeout: WAIT });

  step('a claim made elsewhere appears live');
  await ask('claim bob');
  await claimsRow(page, 'bob').locator('text=Active').waitFor({ timeout: WAIT });
  check(await page.evaluate(() => window.__bhNoReload === 1), 'the page was not reloaded');

  step('the idle bar counts down');
  const first = await idleLeft(page, 'alice');
  check(first > 0, `idle time left starts above 0 (${first})`);
  await page.waitForFunction(
    ([t, v]) => Number(document.querySelector(`[aria-label="idle time left for ${t}"]`).getAttribute('aria-valuenow')) < v,
    ['alice', first], { timeout: WAIT });
  console.log(`IDLE ${first} -> ${await idleLeft(page, 'alice')}`);
  await shot(page, 'workloads-1280');

  step('release from the tree: the tenant shows under hibernated with its snapshot');
  await claimsRow(page, 'alice').getByRole('button', { name: 'Release', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  await hibernatedRow(page, 'alice').waitFor({ timeout: WAIT });
  await page.waitForFunction(
    (w) => /\d+(\.\d)? (B|KiB|MiB)/.test(document.querySelector(`li[data-workload="${w}"] table.hibernated tr[data-tenant="alice"]`)?.textContent || ''),
    cfg.workload, { timeout: WAIT });
  check((await claimsRow(page, 'alice').count()) === 0, 'alice is no longer claimed');
  check(await hibernatedRow(page, 'alice').getByRole('button', { name: 'Claim' }).isVisible(), 'a claim (restore) button');

  step('instance page: details, resource use, log');
  await claimsRow(page, 'bob').getByRole('link').click();
  await page.locator('[data-k="memory"]').filter({ hasText: /\d+(\.\d)? (B|KiB|MiB)/ }).waitFor({ timeout: WAIT });
  await page.locator('[data-k="cpu"]').filter({ hasText: '% of one core' }).waitFor({ timeout: WAIT });
  check((await page.locator('#inst-h').textContent()).includes('Active') ||
        (await page.locator('#inst-h').textContent()).includes('Running'), 'instance heading shows its phase');
  await livePushed(page);
  await shot(page, 'instance');
  await page.evaluate(() => (window.__bhNoReload = 1)); // livePushed reloaded the page

  step('a webhook trigger event appears live');
  await page.getByRole('link', { name: 'Triggers' }).click();
  await page.locator('article[data-trigger="uihook"]').waitFor({ timeout: WAIT });
  await ask('webhook');
  await page.locator('.feed li[data-trigger="uihook"]').filter({ hasText: 'deny' }).waitFor({ timeout: WAIT });
  await page.locator('article[data-trigger="uihook"] table.trigger-events').filter({ hasText: 'gh-stranger' }).waitFor({ timeout: WAIT });
  await shot(page, 'triggers');

  step('tenants search, audit filters, policies, metrics');
  await page.getByRole('link', { name: 'Tenants' }).click();
  await page.getByLabel('Search tenants').fill('ali');
  await page.locator('table.tenants tr[data-tenant="alice"]').waitFor({ timeout: WAIT });
  check((await page.locator('table.tenants tbody tr').count()) === 1, 'search leaves only alice');
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Tenant', { exact: true }).fill('alice');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('table.audit tbody tr').filter({ hasText: 'release' }).first().waitFor({ timeout: WAIT });
  await page.getByRole('link', { name: 'Policies' }).click();
  await page.locator('#pol-h').waitFor({ timeout: WAIT });
  await page.getByRole('link', { name: 'Metrics' }).click();
  await page.locator('figcaption', { hasText: 'Claim latency by source' }).locator('text=/\\(([1-9]\\d*) points\\)/').waitFor({ timeout: WAIT });
  await page.locator('table.metrics-table').filter({ hasText: 'boilerhouse_claims_total' }).waitFor({ timeout: WAIT });
  await shot(page, 'metrics');

  step('the page survives a daemon restart');
  await page.getByRole('link', { name: 'Workloads' }).click();
  await ask('restart');
  await page.locator('[data-live="live"]').waitFor({ timeout: WAIT });
  await ask('claim carol');
  await claimsRow(page, 'carol').locator('text=Active').waitFor({ timeout: WAIT });
  check(await page.evaluate(() => window.__bhNoReload === 1), 'no reload across the restart');

  step('keyboard: the nav is reachable and works with Enter');
  await page.getByRole('link', { name: 'Tenants' }).focus();
  await page.keyboard.press('Enter');
  await page.locator('#ten-h').waitFor({ timeout: WAIT });
  await page.getByRole('link', { name: 'Workloads' }).focus();
  await page.keyboard.press('Enter');

  step('phone width');
  await page.setViewportSize({ width: 390, height: 844 });
  await claimsRow(page, 'carol').waitFor({ timeout: WAIT });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const wide = await page.evaluate(() => [...document.querySelectorAll('body *')]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap'))
    .slice(0, 5).map((e) => `${e.tagName}.${e.className}`).join(', '));
  check(overflow <= 1, `no sideways scrolling of the page at 390 px (${overflow} px too wide: ${wide})`);
  await shot(page, 'workloads-390');
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot(page, 'dashboard');
}

async function viewer(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  step('login with a viewer token');
  await login(page, cfg.viewer);
  await page.locator(`li[data-workload="${cfg.workload}"]`).waitFor({ timeout: WAIT });
  await claimsRow(page, 'viewed').waitFor({ timeout: WAIT });
  for (const name of ['Claim', 'Release', 'Force release', 'Destroy', 'Retry release'])
    check((await page.getByRole('button', { name, exact: true }).count()) === 0, `a viewer sees no ${name} button`);
  check((await page.getByLabel('Tenant ID').count()) === 0, 'a viewer sees no claim form');
  await shot(page, 'viewer');
  step('a forced mutating call with the viewer token gets 403');
  const status = await page.evaluate(async ([token, w]) => {
    const r = await fetch('/api/v1/tenants/viewed/release', {
      method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ workload: w }),
    });
    return r.status;
  }, [cfg.viewer, cfg.workload]);
  check(status === 403, `viewer release answered ${status}, expected 403`);
  const more = await page.evaluate(async ([token, w]) => {
    const call = async (method, path, body) => (await fetch(path, {
      method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}) })).status;
    return [await call('POST', '/api/v1/tenants/viewer-new/claim', { workload: w }),
      await call('POST', '/api/v1/tokens', { name: 'x', scopes: ['admin'] }),
      await call('DELETE', `/api/v1/workloads/${w}`)];
  }, [cfg.viewer, cfg.workload]);
  check(more.every((s) => s === 403), `viewer claim, token mint, workload delete answered ${more}, expected 403`);
  await claimsRow(page, 'viewed').locator('text=Active').waitFor({ timeout: WAIT });
}

async function tenant(browser) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const frames = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))));
  step('login with a tenant token');
  await login(page, cfg.tenantToken);
  await claimsRow(page, cfg.tenant).locator('text=Active').waitFor({ timeout: WAIT });
  const nav = await page.getByRole('navigation', { name: 'Pages' }).textContent();
  check(!/Metrics|Audit|Triggers|Tenants/.test(nav), `a tenant token sees only its own page (nav: ${nav})`);
  check(!(await page.content()).includes(cfg.other), `nothing of ${cfg.other} is shown`);
  check((await claimsRow(page, cfg.tenant).getByRole('button', { name: 'Release', exact: true }).count()) === 1,
        'its own claim can be released');
  check((await page.getByRole('button', { name: 'Destroy', exact: true }).count()) === 0, 'no Destroy button');

  step("another tenant's claim made meanwhile does not reach the page");
  await ask(`claim ${cfg.other}2`);
  await ask(`say-tenant ${cfg.tenant} mine-1`);

  step('its instance page: live stats and log');
  await claimsRow(page, cfg.tenant).getByRole('link').click();
  await page.locator('[data-k="memory"]').filter({ hasText: /\d+(\.\d)? (B|KiB|MiB)/ }).waitFor({ timeout: WAIT });
  await page.locator('pre.log').filter({ hasText: 'mine-1' }).waitFor({ timeout: WAIT });
  await shot(page, 'tenant');

  step('forced calls outside its tenant get 403');
  const calls = await page.evaluate(async ([token, t, other, otherIid, mineIid, w]) => {
    const call = async (method, path, body) => (await fetch(path, {
      method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined })).status;
    return {
      releaseOther: await call('POST', `/api/v1/tenants/${other}/release`, { workload: w }),
      claimOther: await call('POST', `/api/v1/tenants/${other}3/claim`, { workload: w }),
      readOther: await call('GET', `/api/v1/tenants/${other}`),
      otherInstance: await call('GET', `/api/v1/instances/${otherIid}`),
      otherSamples: await call('GET', `/api/v1/instances/${otherIid}/samples`),
      list: await call('GET', '/api/v1/instances'),
      destroyMine: await call('POST', `/api/v1/instances/${mineIid}/destroy`),
      workloads: await call('POST', '/api/v1/workloads', { name: 'x' }),
      mine: await call('GET', `/api/v1/instances/${mineIid}`),
    };
  }, [cfg.tenantToken, cfg.tenant, cfg.other, cfg.otherInstance, instanceId(page), cfg.workload]);
  console.log(`TENANT CALLS ${JSON.stringify(calls)}`);
  for (const [k, v] of Object.entries(calls)) check(v === (k === 'mine' ? 200 : 403), `${k} answered ${v}`);

  step('its own release shows live; no event of another tenant arrived');
  await page.getByRole('link', { name: 'Workloads' }).click();
  await claimsRow(page, cfg.tenant).getByRole('button', { name: 'Release', exact: true }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  await page.waitForFunction((t) => !document.querySelector(`table.claims tr[data-tenant="${t}"]`), cfg.tenant, { timeout: WAIT });
  const leaked = frames.filter((f) => f.includes(cfg.other));
  check(frames.length > 0 && !leaked.length, `no /ws frame names ${cfg.other} (${frames.length} frames; ${leaked.slice(0, 2).join(' ')})`);
}

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
let code = 0;
try {
  await ({ viewer, tenant, admin }[cfg.mode] || admin)(browser);
  step('done');
} catch (e) {
  console.log(`FAIL ${e.stack || e}`);
  const pages = browser.contexts().flatMap((c) => c.pages());
  for (const p of pages) await shot(p, `failure-${cfg.mode}`).catch(() => {});
  code = 1;
} finally {
  await browser.close();
  lines.close();
}
process.exit(code);
