// Browser end-to-end flows for passgate, in Debian's Chromium driven by playwright-core.
//
// Run by tests/browser.rs (`cargo test --test browser`), which starts a fake TrueNAS and two
// passgate servers on 127.0.0.1 and passes them in E2E_* variables. On every page a flow
// visits, axe-core checks accessibility (a `serious` or `critical` violation fails the run),
// and any console error, page error, CSP violation, failed subresource or request leaving
// 127.0.0.1 fails the flow. Each flow saves screenshots at 1280x800 and 360x740.
//
// E2E_ONLY=signin,totp runs only the named flows (for debugging).
//
// The reset flows run on a third portal (E2E_RESET_URL) that offers "Forgot your password?".
// Its mail goes to the fake TrueNAS; tests/browser.rs watches the fake's outbox and writes the
// paths of each reset mail's links to E2E_MAILBOX/<address>.json, which `mailTo` waits for.

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this through \`cargo test --test browser\``);
  }
  return value;
}

const BASE = env('E2E_BASE_URL');
const LIMITED = env('E2E_LIMITED_URL');
const RESET = env('E2E_RESET_URL');
const MAILBOX = env('E2E_MAILBOX');
const SHOTS = env('E2E_SCREENSHOTS');
const CHROMIUM = process.env.E2E_CHROMIUM || '/usr/bin/chromium';
const ACCOUNTS = JSON.parse(env('E2E_ACCOUNTS'));
const ONLY = (process.env.E2E_ONLY || '').split(',').filter(Boolean);
/** A username the audit page's charts must show as text (tests/browser.rs puts it there). */
const HOSTILE_USER = process.env.E2E_HOSTILE_USER || '';

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 360, height: 740 };
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const FAILING_IMPACTS = new Set(['serious', 'critical']);

/** Every axe violation seen, failing or not: `${id} (${impact})` → pages. */
const axeSeen = new Map();
let pagesAudited = 0;
/** Findings that do not fail the run, printed once at the end. */
const notes = new Set();

class FlowError extends Error {}

function fail(message) {
  throw new FlowError(message);
}

function expect(condition, message) {
  if (!condition) fail(message);
}

/** A TOTP code from the real oathtool; `at` is a unix time (default: now). */
function oathtool(secret, at) {
  const args = ['--totp', '-b'];
  if (at !== undefined) args.push('-N', `@${at}`);
  args.push(secret);
  return execFileSync('oathtool', args, { encoding: 'utf8' }).trim();
}

const unixNow = () => Math.floor(Date.now() / 1000);

/**
 * The links of the reset mail to `address` ({ link, cancel, subject }; paths, opened at the
 * reset portal), once tests/browser.rs has put them in the mailbox. Taken out of it, so a
 * second mail would have to arrive anew.
 */
async function mailTo(address, timeoutMs = 20000) {
  const file = path.join(MAILBOX, `${address}.json`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    if (text !== undefined) {
      fs.unlinkSync(file);
      const mail = JSON.parse(text);
      expect(/^\/reset\/[A-Za-z0-9_-]{43}$/.test(mail.link), `a reset link in the mail: ${text}`);
      return mail;
    }
    if (Date.now() > deadline) fail(`no reset mail to ${address} within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One browser context (fresh cookies) and page, with everything the checks need. */
class Visit {
  constructor(flow, page, base) {
    this.flow = flow;
    this.page = page;
    this.base = base;
    this.problems = [];
    this.consoleErrors = [];
    this.documents = []; // { url, status }
    this.loads = 0;
    this.audited = 0;
    this.host = new URL(base).host;

    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        this.consoleErrors.push({ text: msg.text(), url: msg.location().url });
      }
    });
    page.on('pageerror', (error) => this.problems.push(`page error: ${error.message}`));
    page.on('load', () => {
      this.loads += 1;
    });
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (['data:', 'about:', 'blob:'].includes(url.protocol)) return;
      if (url.hostname !== '127.0.0.1') {
        this.problems.push(`request leaves loopback: ${request.method()} ${request.url()}`);
      }
    });
    page.on('response', (response) => {
      const request = response.request();
      if (request.resourceType() === 'document') {
        this.documents.push({ url: response.url(), status: response.status() });
      } else if (response.status() >= 400) {
        this.problems.push(
          `${request.resourceType()} ${response.url()} answered ${response.status()}`,
        );
      }
    });
    page.on('requestfailed', (request) => {
      const reason = request.failure()?.errorText ?? 'failed';
      // A document request is aborted when a form navigates again before it finished;
      // the flow's own status checks catch real document failures.
      // So is a strength check still in flight when its form is submitted.
      const aborted = reason === 'net::ERR_ABORTED';
      const navigatedAway = aborted && ['fetch', 'xhr'].includes(request.resourceType());
      if (request.resourceType() !== 'document' && !navigatedAway) {
        this.problems.push(`${request.resourceType()} ${request.url()} failed: ${reason}`);
      }
    });
  }

  url(pathname) {
    return new URL(pathname, this.base).toString();
  }

  path() {
    return new URL(this.page.url()).pathname;
  }

  /** Checks a navigation's status, then audits the page it led to. */
  async arrived(response, status, what) {
    expect(response, `${what}: no response`);
    const got = response.status();
    if (got !== status) {
      const body = (await this.page.locator('body').innerText().catch(() => '')).slice(0, 600);
      fail(`${what}: expected HTTP ${status}, got ${got} at ${this.page.url()}\n${body}`);
    }
    await this.audit(what);
    return response;
  }

  async goto(pathname, status) {
    const response = await this.page.goto(this.url(pathname), { waitUntil: 'load' });
    return this.arrived(response, status, `GET ${pathname}`);
  }

  /** Fills `fields` ({selector: value}) inside the form posting to `action`, submits it. */
  async submit(action, fields, status) {
    const form = await this.fill(action, fields);
    return this.navigateBy(form.locator('button[type=submit]').first(), status, `POST ${action}`);
  }

  /** Fills `fields` ({selector: value}) inside the form posting to `action`; returns it. */
  async fill(action, fields) {
    const form = this.page.locator(`form[action="${action}"]`).first();
    expect(await form.count(), `no form posting to ${action} on ${this.path()}`);
    for (const [selector, value] of Object.entries(fields)) {
      await form.locator(selector).fill(value);
    }
    return form;
  }

  /** Clicks `locator` (a link or a button) and audits the page it leads to. */
  async navigateBy(locator, status, what) {
    // Started before the click, so the navigation cannot be missed; resolves with the
    // last response of a redirect chain (the page shown).
    const navigation = this.page.waitForNavigation({ waitUntil: 'load' });
    await locator.click();
    return this.arrived(await navigation, status, what);
  }

  async click(selector, status) {
    const link = this.page.locator(selector).first();
    expect(await link.count(), `no ${selector} on ${this.path()}`);
    return this.navigateBy(link, status, `click ${selector}`);
  }

  async signIn(username, password, status = 200) {
    await this.goto('/login', 200);
    return this.submit('/login', { '#username': username, '#password': password }, status);
  }

  /** Signs out; the answer is the sign-in page (at /logout) with a notice. */
  async signOut() {
    await this.submit('/logout', {}, 200);
    expect(
      await this.page.locator('form[action="/login"] #username').count(),
      `sign-out should show the sign-in form, at ${this.path()}`,
    );
    expect(await this.page.locator('[role=status]').count(), 'sign-out says so');
  }

  async text(selector) {
    const locator = this.page.locator(selector).first();
    expect(await locator.count(), `no ${selector} on ${this.path()}`);
    return (await locator.innerText()).trim();
  }

  /** axe-core on the current page; `serious`/`critical` violations fail the flow. */
  async audit(what) {
    this.audited += 1;
    pagesAudited += 1;
    const page = this.page;
    const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
    if (!loaded) {
      // Evaluated through the DevTools protocol: not subject to the page's CSP.
      await page.evaluate(AXE_SOURCE);
    }
    const result = await page.evaluate(() =>
      window.axe.run(document, { resultTypes: ['violations'] }),
    );
    const where = `${this.path()} (${what})`;
    expect(result.passes.length > 0, `axe checked nothing on ${where}`);
    for (const v of result.violations) {
      const key = `${v.id} (${v.impact})`;
      if (!axeSeen.has(key)) axeSeen.set(key, new Set());
      axeSeen.get(key).add(this.path());
      const nodes = v.nodes
        .slice(0, 5)
        .map((n) => `      ${n.target.join(' ')}: ${n.failureSummary?.replace(/\n\s*/g, ' ')}`)
        .join('\n');
      const line = `axe ${v.impact} ${v.id} on ${where}: ${v.help}\n${nodes}`;
      if (FAILING_IMPACTS.has(v.impact)) {
        this.problems.push(line);
      } else {
        console.log(`  note: ${line}`);
      }
    }
  }

  /** Full-page screenshots at 1280x800 and 360x740; the page must fit 360 px wide. */
  async shot(name) {
    const page = this.page;
    await page.screenshot({ path: path.join(SHOTS, `${name}-1280x800.png`), fullPage: true });
    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    if (overflow > 0) {
      this.problems.push(`${this.path()} is ${overflow}px wider than a 360px screen`);
    }
    await page.screenshot({ path: path.join(SHOTS, `${name}-360x740.png`), fullPage: true });
    await page.setViewportSize(DESKTOP);
  }

  /** Screenshots of one element at 1280x800 and 360x740; it must fit 360 px wide. */
  async shotOf(selector, name) {
    const page = this.page;
    const element = page.locator(selector).first();
    expect(await element.count(), `no ${selector} to photograph on ${this.path()}`);
    await element.screenshot({ path: path.join(SHOTS, `${name}-1280x800.png`) });
    await page.setViewportSize(PHONE);
    const overflow = await element.evaluate((e) => e.scrollWidth - e.clientWidth);
    if (overflow > 0) this.problems.push(`${selector} is ${overflow}px too wide at 360px`);
    const box = await element.boundingBox();
    if (box && box.x + box.width > PHONE.width) {
      this.problems.push(`${selector} ends at ${box.x + box.width}px on a 360px screen`);
    }
    await element.screenshot({ path: path.join(SHOTS, `${name}-360x740.png`) });
    await page.setViewportSize(DESKTOP);
  }

  /** Throws with everything that went wrong besides the flow's own assertions. */
  finish() {
    for (const { text, url } of this.consoleErrors) {
      // Chromium logs every 4xx/5xx document as a console error; the flows expect and assert
      // those statuses. The same message for anything else is a problem.
      const status = /^Failed to load resource: the server responded with a status of (\d+)/.exec(
        text,
      );
      const expectedDocument =
        status && this.documents.some((d) => d.url === url && d.status === Number(status[1]));
      if (expectedDocument) continue;
      this.problems.push(`console error: ${text} (${url})`);
    }
    if (this.loads !== this.audited) {
      this.problems.push(`${this.loads} pages loaded but ${this.audited} audited`);
    }
    if (this.problems.length) fail(this.problems.join('\n'));
  }
}

async function run(browser, flow, options, body) {
  if (ONLY.length && !ONLY.includes(flow)) return 'skipped';
  const started = Date.now();
  const context = await browser.newContext({
    locale: options.locale ?? 'en-US',
    viewport: DESKTOP,
    serviceWorkers: 'block',
  });
  // Reports CSP violations as console errors, which fail the flow. Injected through the
  // DevTools protocol, so the page's CSP does not block it.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const visit = new Visit(flow, page, options.base ?? BASE);
  try {
    await body(visit);
    visit.finish();
    console.log(`ok   ${flow} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return 'ok';
  } catch (error) {
    const extra = visit.problems.length ? `\n${visit.problems.join('\n')}` : '';
    console.log(`FAIL ${flow} at ${page.url()}\n${error.stack ?? error}${extra}`);
    await page
      .screenshot({ path: path.join(SHOTS, `FAILED-${flow}.png`), fullPage: true })
      .catch(() => {});
    return 'failed';
  } finally {
    await context.close();
  }
}

// 1. Sign in, change the password, sign in with the new one, sign out.
async function signInChangeSignOut(v) {
  const { username, password, new_password: newPassword } = ACCOUNTS.change;
  await v.goto('/login', 200);
  expect((await v.page.locator('#username').inputValue()) === '', 'username starts empty');
  expect(
    (await v.page.locator('a[href="/reset"]').count()) === 0,
    'no "Forgot your password?" where reset is off',
  );
  await v.shot('signin');
  await v.submit('/login', { '#username': username, '#password': password }, 200);
  expect(v.path() === '/password', `sign-in should lead to /password, not ${v.path()}`);
  await v.shot('password');
  await v.fill('/password', { '#current_password': password, '#new_password': newPassword });
  // /static/app.js (progressive enhancement, under the CSP) shows a live strength meter.
  const meter = v.page.locator('#strength');
  if (await meter.count()) {
    await meter.waitFor({ state: 'visible', timeout: 5000 });
    await v.shot('password-strength');
  } else {
    console.log('  note: no #strength meter on the password page');
  }
  await v.submit('/password', { '#confirm_password': newPassword }, 200);
  const done = await v.page.locator('main').innerText();
  expect(/new password/i.test(done), `the success page should mention the new password:\n${done}`);
  expect(await v.page.locator('a[href="/login"]').count(), 'a link back to sign in');
  await v.shot('changed');
  // The session ended with the change; the old password no longer works, the new one does.
  await v.click('a[href="/login"]', 200);
  await v.submit('/login', { '#username': username, '#password': password }, 401);
  await v.submit('/login', { '#username': username, '#password': newPassword }, 200);
  expect(v.path() === '/password', `the new password should sign in, at ${v.path()}`);
  await v.signOut();
  await v.shot('signed-out');
  await v.goto('/password', 200);
  expect(v.path() === '/login', 'after sign-out /password sends to /login');
}

// 2. A wrong password: the error, and the typed username kept.
async function wrongPassword(v) {
  const { username } = ACCOUNTS.wrong;
  await v.signIn(username, 'Not-The-Password-99', 401);
  const alert = await v.text('[role=alert]');
  expect(alert.length > 0, 'an error is shown');
  expect(/invalid username or password/i.test(alert), `the error says what is wrong: ${alert}`);
  const kept = await v.page.locator('#username').inputValue();
  expect(kept === username, `the typed username is kept (got "${kept}")`);
  const typed = await v.page.locator('#password').inputValue();
  expect(typed === '', 'the password is never echoed back');
  await v.shot('signin-error');
}

// 7b. The audit page's charts in German.
async function adminChartsGerman(v) {
  const admin = ACCOUNTS.admin;
  await v.signIn(admin.username, admin.password);
  await v.goto('/admin/audit', 200);
  const lang = await v.page.locator('html').getAttribute('lang');
  expect(lang === 'de', `a de-DE browser gets the German page, not lang=${lang}`);
  const title = await v.page.locator('#chart-last-hour title').first().textContent();
  expect(/pro Minute/.test(title), `the chart title is German: ${title}`);
  await checkCharts(v, 'admin-charts-de');
  await v.goto('/password', 200);
  await v.signOut();
}

// 2b. The same in German, when the pages speak it.
async function wrongPasswordGerman(v) {
  const { username } = ACCOUNTS.wrong;
  await v.signIn(username, 'Nicht-Das-Passwort-99', 401);
  const lang = await v.page.locator('html').getAttribute('lang');
  if (lang?.startsWith('de')) {
    console.log(`  de-DE: <html lang="${lang}">`);
  } else if (lang === 'en') {
    console.log('  note: de-DE browser still gets <html lang="en">: German not there yet, lang check skipped');
  } else {
    fail(`unexpected <html lang="${lang}"> for a de-DE browser`);
  }
  expect((await v.text('[role=alert]')).length > 0, 'an error is shown');
  expect((await v.page.locator('#username').inputValue()) === username, 'the username is kept');
  await v.shot('signin-error-de');
}

// 3. TrueNAS refuses a password from the user's history: its rule in plain words.
async function truenasRule(v) {
  const { username, password, new_password: newPassword } = ACCOUNTS.history;
  await v.signIn(username, password);
  await v.submit(
    '/password',
    {
      '#current_password': password,
      '#new_password': newPassword,
      '#confirm_password': newPassword,
    },
    200,
  );
  await v.signIn(username, newPassword);
  await v.submit(
    '/password',
    {
      '#current_password': newPassword,
      '#new_password': password,
      '#confirm_password': password,
    },
    422,
  );
  const alert = await v.text('[role=alert]');
  expect(/used this password before/i.test(alert), `TrueNAS' rule in plain words: ${alert}`);
  expect(/last 3 passwords/i.test(alert), `the rule names how many: ${alert}`);
  expect(!/security configuration/i.test(alert), `not TrueNAS' raw message: ${alert}`);
  for (const id of ['#current_password', '#new_password', '#confirm_password']) {
    expect((await v.page.locator(id).inputValue()) === '', `${id} is not echoed back`);
  }
  await v.shot('password-error');
}

// 4. Too many attempts from one address: the 429 page (a second portal allows 2 per window).
async function rateLimited(v) {
  const { username } = ACCOUNTS.limited;
  await v.signIn(username, 'Wrong-Guess-Number-1', 401);
  await v.submit('/login', { '#username': username, '#password': 'Wrong-Guess-Number-2' }, 401);
  const response = await v.submit(
    '/login',
    { '#username': username, '#password': 'Wrong-Guess-Number-3' },
    429,
  );
  const retry = Number(response.headers()['retry-after']);
  expect(retry > 0, `Retry-After is set (${response.headers()['retry-after']})`);
  expect((await v.text('[role=alert]')).length > 0, 'the page says why');
  expect(await v.page.locator('a[href="/login"]').count(), 'a way back to sign in');
  await v.shot('rate-limited');
}

// 5. TOTP: set up with the real oathtool, backup codes, then a sign-in that asks for a code.
async function totp(v) {
  const { username, password } = ACCOUNTS.totp;
  await v.signIn(username, password);
  await v.click('a[href="/totp"]', 200);
  await v.shot('totp-settings');
  await v.submit('/totp/setup', {}, 200);
  expect(await v.page.locator('.qr svg').isVisible(), 'the QR code is shown');
  const secret = (await v.text('.secret code')).replace(/\s+/g, '');
  expect(/^[A-Z2-7]{32}$/.test(secret), `a 160-bit base32 key is shown: ${secret}`);
  await v.shot('totp-setup');
  const confirmedAt = unixNow();
  await v.submit('/totp/confirm', { '#code': oathtool(secret) }, 200);
  const codes = await v.page.locator('.codes li code').allInnerTexts();
  expect(codes.length >= 5, `backup codes are shown (${codes.length})`);
  await v.shot('totp-backup-codes');
  const saved = v.page.locator('#saved');
  if (await saved.count()) {
    await saved.check();
    const inForm = v.page.locator('form:has(#saved) button[type=submit]');
    if (await inForm.count()) {
      await v.navigateBy(inForm.first(), 200, 'continue after saving backup codes');
    } else {
      await v.click('main a.button', 200);
    }
  } else {
    await v.click('main a.button', 200);
  }
  expect(v.path() === '/password', `after the backup codes: /password, not ${v.path()}`);
  await v.signOut();

  await v.signIn(username, password);
  expect(v.path() === '/login/totp', `the code step follows the password, not ${v.path()}`);
  expect(await v.page.locator('#code').count(), 'a code field');
  await v.shot('totp-code');
  // One step later than the code that confirmed the set-up: a code is never accepted twice,
  // and the server accepts one step of clock drift.
  await v.submit('/login/totp', { '#code': oathtool(secret, Math.max(unixNow(), confirmedAt) + 30) }, 200);
  expect(v.path() === '/password', `a right code signs in, at ${v.path()}`);
  await v.signOut();
}

// 6. A form posted without its CSRF token is refused (403) and changes nothing.
async function csrfRemoved(v) {
  const { username, password, new_password: newPassword } = ACCOUNTS.csrf;
  await v.signIn(username, password);
  await v.page.evaluate(() => {
    for (const field of document.querySelectorAll('form[action="/password"] input[name=csrf]')) {
      field.remove();
    }
  });
  expect(
    (await v.page.locator('form[action="/password"] input[name=csrf]').count()) === 0,
    'the token was removed',
  );
  await v.submit(
    '/password',
    {
      '#current_password': password,
      '#new_password': newPassword,
      '#confirm_password': newPassword,
    },
    403,
  );
  expect((await v.text('[role=alert]')).length > 0, 'the refusal is explained');
  await v.shot('csrf-refused');
  // Nothing happened: the old password still signs in, the new one does not.
  await v.goto('/password', 200);
  expect(v.path() === '/password', 'the session is still there');
  await v.signOut();
  await v.signIn(username, newPassword, 401);
  await v.submit('/login', { '#username': username, '#password': password }, 200);
  expect(v.path() === '/password', 'the old password still works');
  await v.signOut();
}

/**
 * The audit page's attack charts: four inline SVGs, each an image named by its title and
 * description, with the numbers as a table, a hostile username shown as text. CSP
 * violations are caught for every flow (see `run`).
 */
async function checkCharts(v, shotName) {
  const page = v.page;
  const charts = page.locator('#attack-charts svg.chart-svg');
  const count = await charts.count();
  expect(count === 4, `four attack charts on the audit page, found ${count}`);
  for (let i = 0; i < count; i += 1) {
    const named = await charts.nth(i).evaluate((svg) => {
      const ids = (svg.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
      const parts = ids.map((id) => document.getElementById(id));
      return {
        id: svg.id,
        role: svg.getAttribute('role'),
        title: parts[0]?.tagName === 'title' ? parts[0].textContent.trim() : '',
        desc: parts[1]?.tagName === 'desc' ? parts[1].textContent.trim() : '',
        width: svg.getBoundingClientRect().width,
      };
    });
    expect(named.role === 'img', `${named.id} is role=img`);
    expect(named.title && named.desc, `${named.id} has a title and a description: ${JSON.stringify(named)}`);
    expect(named.width > 100, `${named.id} is drawn (${named.width}px wide)`);
  }
  const tables = await page.locator('#attack-charts details.chart-data table').count();
  expect(tables >= 3, `the charts' numbers are in tables (${tables})`);
  // The attack in progress (rows still open) is drawn: bars in the last-hour chart.
  const bars = await page.locator('#chart-last-hour rect.bar-failures, #chart-last-hour rect.bar-refusals').count();
  expect(bars > 2, `the last hour has bars (${bars})`);
  if (HOSTILE_USER) {
    const labels = await page.locator('#chart-top-users text').allTextContents();
    expect(labels.includes(HOSTILE_USER), `the hostile username is a text label: ${labels}`);
    const cells = await page.locator('#attack-charts td').allTextContents();
    expect(cells.includes(HOSTILE_USER), 'the hostile username is a table cell, as text');
    expect((await page.locator('main script').count()) === 0, 'no script element made from it');
  }
  await v.shotOf('#attack-charts', shotName);
}

// 7. The audit page: for administrators only.
async function adminAudit(v) {
  const admin = ACCOUNTS.admin;
  await v.signIn(admin.username, admin.password);
  await v.click('a[href="/admin/audit"]', 200);
  expect(await v.page.locator('table tbody tr').count(), 'the audit page lists events');
  await checkCharts(v, 'admin-charts');
  await v.shot('admin-audit');
  await v.goto('/password', 200);
  await v.signOut();

  const user = ACCOUNTS.user;
  await v.signIn(user.username, user.password);
  expect(
    (await v.page.locator('a[href="/admin/audit"]').count()) === 0,
    'no audit link for a non-admin',
  );
  await v.goto('/admin/audit', 403);
  expect((await v.text('[role=alert]')).length > 0, 'the refusal is explained');
  await v.shot('admin-forbidden');
}

/** The reset pages' words (i18n/en.toml and de.toml, [reset] and [login]). */
const RESET_WORDS = {
  en: {
    lang: 'en',
    forgot: 'Forgot your password?',
    send: 'Send me a link',
    sent: 'Check your e-mail',
    choose: 'Choose a new password',
    submit: 'Change password',
    notChanged: 'Your password was not changed:',
    mismatch: /^Confirmation: the two new passwords do not match\./m,
    done: 'Password changed',
    invalid: 'This link does not work',
    requestNew: 'Ask for a new link',
  },
  de: {
    lang: 'de',
    forgot: 'Passwort vergessen?',
    send: 'Link senden',
    sent: 'Sehen Sie in Ihre E-Mails',
    choose: 'Neues Passwort wählen',
    submit: 'Passwort ändern',
    notChanged: 'Ihr Passwort wurde nicht geändert:',
    mismatch: /^Bestätigung: Die beiden neuen Passwörter stimmen nicht überein\./m,
    done: 'Passwort geändert',
    invalid: 'Dieser Link funktioniert nicht',
    requestNew: 'Neuen Link anfordern',
  },
};

async function expectHeading(v, heading) {
  const h1 = await v.text('h1');
  expect(h1 === heading, `the page is "${heading}", not "${h1}" (${v.path()})`);
}

/**
 * 8. "Forgot your password?": ask for a link, open it from the mail, a mismatching
 * confirmation, the new password, sign in with it; the used link no longer works.
 */
async function resetByMail(v, account, words, suffix) {
  const { username, email, password, new_password: newPassword } = account;
  await v.goto('/login', 200);
  const lang = await v.page.locator('html').getAttribute('lang');
  expect(lang === words.lang, `<html lang="${words.lang}">, not lang=${lang}`);
  const forgot = (await v.text('main a[href="/reset"]')).trim();
  expect(forgot === words.forgot, `the sign-in page links "${words.forgot}", not "${forgot}"`);
  await v.click('main a[href="/reset"]', 200);
  expect(v.path() === '/reset', `the link leads to /reset, not ${v.path()}`);
  await expectHeading(v, words.forgot);
  const send = await v.text('form[action="/reset"] button[type=submit]');
  expect(send === words.send, `the button says "${words.send}", not "${send}"`);
  await v.shot(`reset-request${suffix}`);
  await v.submit('/reset', { '#username': username }, 200);
  await expectHeading(v, words.sent);
  expect((await v.text('[role=status]')).length > 0, 'the page says what happens next');
  await v.shot(`reset-sent${suffix}`);

  const mail = await mailTo(email);
  await v.goto(mail.link, 200);
  await expectHeading(v, words.choose);
  for (const id of ['#new_password', '#confirm_password']) {
    expect(await v.page.locator(`form[action="/reset/confirm"] ${id}`).count(), `a ${id} field`);
  }
  expect((await v.page.locator('#code').count()) === 0, 'no code field without two-step sign-in');
  const submit = await v.text('form[action="/reset/confirm"] button[type=submit]');
  expect(submit === words.submit, `the button says "${words.submit}", not "${submit}"`);
  await v.shot(`reset-form${suffix}`);

  await v.submit(
    '/reset/confirm',
    { '#new_password': newPassword, '#confirm_password': `${newPassword}x` },
    400,
  );
  await expectHeading(v, words.choose);
  const alert = await v.text('[role=alert]');
  expect(alert.startsWith(words.notChanged), `the alert says nothing changed: ${alert}`);
  expect(words.mismatch.test(alert), `the mismatch in plain words: ${alert}`);
  const invalid = await v.page.locator('#confirm_password').getAttribute('aria-invalid');
  expect(invalid === 'true', `the confirmation is marked invalid (aria-invalid=${invalid})`);
  for (const id of ['#new_password', '#confirm_password']) {
    expect((await v.page.locator(id).inputValue()) === '', `${id} is not echoed back`);
  }
  await v.shot(`reset-mismatch${suffix}`);

  await v.submit(
    '/reset/confirm',
    { '#new_password': newPassword, '#confirm_password': newPassword },
    200,
  );
  await expectHeading(v, words.done);
  expect((await v.text('[role=status]')).length > 0, 'the page says what changed');
  await v.shot(`reset-changed${suffix}`);
  // TrueNAS has the new password: the old one no longer signs in, the new one does.
  await v.click('main a[href="/login"]', 200);
  await v.submit('/login', { '#username': username, '#password': password }, 401);
  await v.submit('/login', { '#username': username, '#password': newPassword }, 200);
  expect(v.path() === '/password', `the new password signs in, at ${v.path()}`);
  await v.signOut();

  // The link worked once.
  await v.goto(mail.link, 401);
  await expectHeading(v, words.invalid);
  expect((await v.text('[role=alert]')).length > 0, 'the page says why');
  const again = await v.text('main a[href="/reset"]');
  expect(again === words.requestNew, `a way to a new link: "${again}"`);
  await v.shot(`reset-invalid${suffix}`);
}

// 8b. "This was not me": the mail's cancel link; the reset link then no longer works.
async function resetCancelled(v) {
  const { username, email, password } = ACCOUNTS.reset_cancel;
  await v.goto('/reset', 200);
  await v.submit('/reset', { '#username': username }, 200);
  await expectHeading(v, RESET_WORDS.en.sent);
  const mail = await mailTo(email);
  expect(mail.cancel === `${mail.link}/cancel`, `the mail has the cancel link: ${JSON.stringify(mail)}`);
  await v.goto(mail.cancel, 200);
  await expectHeading(v, 'Cancel this reset?');
  const button = await v.text('form[action="/reset/cancel"] button[type=submit]');
  expect(button === 'Cancel the request', `the button says "Cancel the request", not "${button}"`);
  await v.shot('reset-cancel');
  await v.submit('/reset/cancel', {}, 200);
  await expectHeading(v, 'Request cancelled');
  expect((await v.text('[role=status]')).length > 0, 'the page says what it means');
  await v.shot('reset-cancelled');
  await v.goto(mail.link, 401);
  await expectHeading(v, RESET_WORDS.en.invalid);
  // Nothing changed: the password still signs in.
  await v.signIn(username, password);
  expect(v.path() === '/password', `the password is unchanged, at ${v.path()}`);
  await v.signOut();
}

// 10. SSH keys: add two keys, be refused a private key (kept in the field, never stored),
// remove one, all confirmed with the password; every page works without JavaScript.
async function sshKeys(v) {
  const { username, password, key, second_key: second, private_key: secret, fingerprint } =
    ACCOUNTS.keys;
  await v.signIn(username, password);
  await v.click('a[href="/keys"]', 200);
  expect(/no SSH keys yet/.test(await v.text('main')), 'an empty list says so');
  await v.shot('keys-empty');
  await v.submit(
    '/keys',
    { '#add': `${key}\n${second}`, '#current_password': password },
    200,
  );
  const saved = await v.text('[role=status]');
  expect(/holds 2 keys/.test(saved), `the notice counts the keys: ${saved}`);
  expect((await v.text('ul.keys')).includes(fingerprint), 'the key is listed by fingerprint');
  await v.shot('keys-saved');
  // A private key is refused with a warning, and nothing is stored.
  await v.submit('/keys', { '#add': secret, '#current_password': password }, 400);
  const alert = await v.text('[role=alert]');
  expect(/Never paste a private key/.test(alert), `the refusal warns: ${alert}`);
  const focused = await v.page.evaluate(() => document.activeElement?.id);
  expect(focused === 'add', `the refused field has the focus, not ${focused}`);
  expect(
    (await v.page.locator('#add').getAttribute('aria-invalid')) === 'true',
    'the field is marked invalid',
  );
  expect((await v.page.locator('#add').inputValue()) === '', 'a private key is never echoed back');
  await v.shot('keys-refused');
  expect((await v.page.locator('ul.keys li').count()) === 2, 'still two keys');
  // Remove the first key.
  await v.page.locator(`input[name=remove][value="${fingerprint}"]`).check();
  await v.submit('/keys', { '#current_password': password }, 200);
  expect(/holds 1 key\b/.test(await v.text('[role=status]')), 'one key left');
  expect(
    !(await v.text('ul.keys')).includes(fingerprint),
    'the removed key is no longer listed',
  );
  await v.click('a[href="/password"]', 200);
  await v.signOut();
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const started = Date.now();
  // Without a userDataDir, playwright-core starts Chromium with a new empty profile in a
  // temporary directory (--user-data-dir) and deletes it on close.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  console.log(`Chromium ${browser.version()}, screenshots in ${SHOTS}`);
  const results = [];
  try {
    const flows = [
      ['signin', {}, signInChangeSignOut],
      ['wrong-password', {}, wrongPassword],
      ['truenas-rule', {}, truenasRule],
      ['rate-limited', { base: LIMITED }, rateLimited],
      ['totp', {}, totp],
      ['csrf', {}, csrfRemoved],
      ['admin', {}, adminAudit],
      ['german', { locale: 'de-DE' }, wrongPasswordGerman],
      ['admin-de', { locale: 'de-DE' }, adminChartsGerman],
      ['reset', { base: RESET }, (v) => resetByMail(v, ACCOUNTS.reset, RESET_WORDS.en, '')],
      [
        'reset-de',
        { base: RESET, locale: 'de-DE' },
        (v) => resetByMail(v, ACCOUNTS.reset_de, RESET_WORDS.de, '-de'),
      ],
      ['reset-cancel', { base: RESET }, resetCancelled],
      ['ssh-keys', {}, sshKeys],
    ];
    for (const [name, options, body] of flows) {
      results.push([name, await run(browser, name, options, body)]);
    }
  } finally {
    await browser.close();
  }
  for (const note of notes) console.log(`note: ${note}`);
  if (axeSeen.size) {
    console.log('axe violations seen (impact: pages):');
    for (const [key, pages] of axeSeen) console.log(`  ${key}: ${[...pages].join(', ')}`);
  } else {
    console.log('axe: no violations on any page');
  }
  const failed = results.filter(([, r]) => r === 'failed').map(([n]) => n);
  const passed = results.filter(([, r]) => r === 'ok').length;
  console.log(
    `${pagesAudited} pages audited in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  console.log(`browser flows: ${passed} passed, ${failed.length} failed${failed.length ? `: ${failed.join(', ')}` : ''}`);
  process.exitCode = failed.length ? 1 : 0;
}

main().catch((error) => {
  console.error(error.stack ?? error);
  process.exitCode = 2;
});
