// Browser smoke test: first-run setup, sign out and in, the users page, a new user.
// Drives Debian's Chromium (no browser download). Needs BASE_URL of a console with an empty
// database; writes screenshots to SCREENSHOT_DIR.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.BASE_URL ?? 'http://127.0.0.1:18090';
const shots = process.env.SCREENSHOT_DIR ?? '../../target/browser';
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
mkdirSync(shots, { recursive: true });

const admin = { email: 'first.admin@example.org', name: 'First Admin', password: 'a long enough password' };

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const browser = await chromium.launch({
  executablePath,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
  const page = await browser.newPage();
  // A CSP violation or a script error shows up here: the page must run without either.
  // The refused sign-in answers 401 on purpose; anything else logged as an error is a problem.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().includes('status of 401')) problems.push(msg.text());
  });
  page.on('pageerror', (err) => problems.push(err.message));

  await page.goto(`${base}/`);
  check(page.url().endsWith('/setup'), `a new console opens on setup, got ${page.url()}`);
  await page.fill('input[name=email]', admin.email);
  await page.fill('input[name=display_name]', admin.name);
  await page.fill('input[name=password]', admin.password);
  await page.fill('input[name=password_confirmation]', admin.password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('main button[type=submit]')]);
  check((await page.textContent('h1')).includes(`Hello, ${admin.name}`), 'dashboard greets the admin');
  const htmxLoaded = await page.evaluate(() => typeof window.htmx === 'object' && window.htmx.version);
  check(htmxLoaded === '2.0.11', `vendored htmx 2.0.11 runs under the CSP, got ${htmxLoaded}`);

  await Promise.all([page.waitForURL(/\/signin$/), page.click('text=Sign out')]);
  await page.fill('input[name=email]', admin.email);
  await page.fill('input[name=password]', 'not the password');
  await page.click('main button[type=submit]');
  check((await page.textContent('[role=alert]')).includes('The email or the password is wrong.'), 'wrong password is explained');
  await page.fill('input[name=password]', admin.password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('main button[type=submit]')]);

  await Promise.all([page.waitForURL(`${base}/users`), page.click('nav >> text=Users')]);
  check(await page.isVisible(`tr[data-user="${admin.email}"]`), 'the users page lists the admin');
  check((await page.textContent(`tr[data-user="${admin.email}"]`)).includes('last active admin'), 'the last admin is protected');

  await Promise.all([page.waitForURL(`${base}/users/new`), page.click('text=Add a user')]);
  await page.fill('input[name=email]', 'editor@example.org');
  await page.fill('input[name=display_name]', 'Eddie Editor');
  await page.check('input[name=role][value=editor]');
  await page.fill('input[name=password]', 'another long password');
  await Promise.all([page.waitForURL(`${base}/users`), page.click('main button[type=submit]')]);
  check((await page.textContent('.flash')).includes('editor@example.org can now sign in as editor.'), 'creation is confirmed');
  check(await page.isVisible('tr[data-user="editor@example.org"]'), 'the new user is listed');

  const shot = join(shots, 'users.png');
  await page.screenshot({ path: shot, fullPage: true });
  check(problems.length === 0, `no console errors, got: ${problems.join(' | ')}`);
  console.log(`browser smoke test passed; screenshot: ${shot}`);
} finally {
  await browser.close();
}
