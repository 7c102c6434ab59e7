// Browser smoke test: first-run setup, sign out and in, the users page, a new user, a custom
// field used by a new contact, an edit seen in the history, search as you type, an import, an
// application, and a desynchronised contact checked field by field.
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
  // The refused sign-in (401) and the refused form (422) are on purpose; any other error is a problem.
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of (401|422)/.test(msg.text())) problems.push(msg.text());
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

  const usersShot = join(shots, 'users.png');
  await page.screenshot({ path: usersShot, fullPage: true });

  // Records: an admin adds the custom field tag1, a contact uses it, an edit shows in history.
  await Promise.all([page.waitForURL(`${base}/fields`), page.click('nav >> text=Fields')]);
  await page.fill('input[name=key]', 'tag1');
  await page.fill('input[name=label]', 'Tag 1');
  await page.selectOption('select[name=field_type]', 'text');
  await Promise.all([page.waitForURL(/\/fields\?kind=contact$/), page.click('main button:has-text("Add field")')]);
  check(await page.isVisible('tr[data-field="tag1"]'), 'tag1 is listed among the contact fields');

  await Promise.all([page.waitForURL(`${base}/contacts`), page.click('nav >> text=Contacts')]);
  await Promise.all([page.waitForURL(`${base}/contacts/new`), page.click('text=New contact')]);
  await page.fill('input[name=f_name]', 'Ada Lovelace');
  await page.fill('input[name=f_email]', 'not-an-email');
  await page.fill('input[name=f_tag1]', 'vip');
  await page.click('main button[type=submit]');
  check((await page.textContent('.field-error')).includes('not a valid email address'), 'a bad email is refused inline');
  await page.fill('input[name=f_email]', 'ada@example.org');
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('main button[type=submit]')]);
  check((await page.textContent('tr[data-field="tag1"]')).includes('vip'), 'the record shows tag1');

  await Promise.all([page.waitForURL(/\/edit$/), page.click('text=Edit')]);
  await page.fill('input[name=f_tag1]', 'gold');
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('main button[type=submit]')]);
  const history = await page.textContent('#history');
  check(history.includes('vip') && history.includes('gold') && history.includes(admin.name), 'the history shows the edit and who made it');
  await page.screenshot({ path: join(shots, 'record.png'), fullPage: true });

  // Search as you type narrows the list without a page load (htmx).
  {
    await Promise.all([page.waitForURL(`${base}/contacts`), page.click('nav >> text=Contacts')]);
    await page.fill('#search', 'zzz-nobody');
    await page.waitForSelector('text=No contacts to show.');
    await page.fill('#search', 'ada');
    await page.waitForSelector('#records >> text=Ada Lovelace');
    check(page.url().includes('q=ada'), `the search is in the address bar, got ${page.url()}`);
  }
  await page.screenshot({ path: join(shots, 'contacts.png'), fullPage: true });

  // Imports: a source with a proposed mapping, a file previewed, dry-run, applied, reported.
  await Promise.all([page.waitForURL(`${base}/sources`), page.click('nav >> text=Sources')]);
  await Promise.all([page.waitForURL(`${base}/sources/new`), page.click('text=Add a source')]);
  await page.fill('input[name=name]', 'Practice');
  await Promise.all([page.waitForURL(/\/sources\/\d+$/), page.click('main button[type=submit]')]);
  const sample = 'External Id;Name;Email;Phone;tag1\n';
  await page.setInputFiles('#mapping input[type=file]', { name: 'sample.csv', mimeType: 'text/csv', buffer: Buffer.from(sample) });
  await Promise.all([page.waitForLoadState('load'), page.click('#mapping button:has-text("Propose")')]);
  check((await page.textContent('#mapping')).includes('4 of 5 lines map to a field'), 'the mapping is proposed from the header');
  await Promise.all([page.waitForURL(/\/sources\/\d+$/), page.click('#mapping button:has-text("Save mapping")')]);
  check((await page.textContent('.flash')).includes('Mapping saved: 4 column(s).'), 'the mapping is saved');

  const file = 'External Id;Name;Email;Phone;tag1\nA1;Ada Lovelace;ada@example.org;;vip\nB2;Grace Hopper;grace@example.org;+44 20 7946 0958;gold\nC3;Alan Turing;not-an-email;;\n';
  await page.setInputFiles('#import input[type=file]', { name: 'people.csv', mimeType: 'text/csv', buffer: Buffer.from(file) });
  await Promise.all([page.waitForURL(/\/imports\/[0-9a-f]{64}/), page.click('#import button[type=submit]')]);
  check((await page.textContent('hgroup')).includes('semicolon (;)'), 'the preview shows the detected delimiter');
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click('text=Dry run')]);
  await page.waitForSelector('text=Apply this plan', { timeout: 20000 });
  check((await page.textContent('#progress')).includes('converted: 1'), 'the dry run matches Ada by name, email and phone');
  // Applying checks the plan against today's records first, then asks to confirm.
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click('text=Apply this plan')]);
  await page.waitForSelector('#decision-changes button', { timeout: 20000 });
  check((await page.textContent('#decision-changes')).includes('No row decides differently'), 'the check finds nothing changed');
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click('#decision-changes button')]);
  await page.waitForSelector('text=Undo this run', { timeout: 20000 });
  const report = await page.textContent('#report');
  check(report.includes('Name, email and phone matched') && report.includes('not a valid email address'), 'the report explains each line');
  // Alan's invalid email skips that field, not the row (the source's default).
  const progress = await page.textContent('#progress');
  check(progress.includes('created: 2') && progress.includes('with a skipped field: 1') && !progress.includes('error:'), 'counts per outcome');
  await page.screenshot({ path: join(shots, 'import-run.png'), fullPage: true });

  // An address-book export without an id column: a source matching by email, its mapping
  // proposed from the file (name, email, phone, company; why and a sample per column), one
  // column made a new custom field, then the file imported.
  await Promise.all([page.waitForURL(`${base}/sources`), page.click('nav >> text=Sources')]);
  await Promise.all([page.waitForURL(`${base}/sources/new`), page.click('text=Add a source')]);
  await page.fill('input[name=name]', 'Google Contacts');
  await page.check('input[name=key][value=fields]');
  await page.fill('input[name=match_by]', 'email');
  await page.fill('input[name=country]', 'FR');
  await Promise.all([page.waitForURL(/\/sources\/\d+$/), page.click('main button[type=submit]')]);
  check((await page.textContent('hgroup')).includes('matched by email'), 'the source matches rows by email');
  const google = '\ufeffName,Given Name,Family Name,Notes,E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Type,Phone 1 - Value,Organization 1 - Name,Group Membership\r\n'
    + 'Zoé Lefèvre,Zoé,Lefèvre,"Met at the fair.\r\nCall back",* Home,zoe@example.fr,Mobile,06 12 34 56 78,Atelier Lumière,vip\r\n'
    + 'Marc Petit,Marc,Petit,,* Work,marc@example.fr,,,,vip\r\n'
    + 'Léa Roux,Léa,Roux,,* Work,lea@example.fr,,,Atelier Lumière,standard\r\n'
    + 'Jo Blanc,Jo,Blanc,,* Work,jo@example.fr,,,,vip\r\n';
  // Dropped into the import form first: its preview offers the proposal for this very file.
  await page.setInputFiles('#import input[type=file]', { name: 'google.csv', mimeType: 'text/csv', buffer: Buffer.from(google) });
  await Promise.all([page.waitForURL(/\/imports\/[0-9a-f]{64}/), page.click('#import button[type=submit]')]);
  check((await page.textContent('main')).includes('no column of this file is mapped to email'), 'the preview says the key is not mapped yet');
  await Promise.all([page.waitForURL(/\/propose\//), page.click('#propose-from-upload')]);
  const mapped = async (column) => page.inputValue(`#mapping tr:has(input[value="${column}"]) select[name$=".field"]`);
  check(await mapped('Name') === 'name' && await mapped('E-mail 1 - Value') === 'email' && await mapped('Phone 1 - Value') === 'phone' && await mapped('Organization 1 - Name') === 'company', 'Google columns are proposed');
  check((await page.textContent('#mapping')).includes('how exports name the email column'), 'each line says why');
  await page.selectOption('#mapping tr:has(input[value="Group Membership"]) select[name$=".field"]', '+');
  check(await page.inputValue('#mapping tr:has(input[value="Group Membership"]) select[name$=".new_type"]') === 'list', 'the new field is proposed as a list');
  await page.screenshot({ path: join(shots, 'mapping-proposal.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/sources\/\d+$/), page.click('#mapping button:has-text("Save mapping")')]);
  check((await page.textContent('.flash')).includes('1 new custom field(s) created'), 'the column became a field');
  await page.setInputFiles('#import input[type=file]', { name: 'google.csv', mimeType: 'text/csv', buffer: Buffer.from(google) });
  await Promise.all([page.waitForURL(/\/imports\/[0-9a-f]{64}/), page.click('#import button[type=submit]')]);
  await Promise.all([page.waitForURL(/\/runs\/\d+$/), page.click('text=Apply now')]);
  await page.waitForSelector('text=Undo this run', { timeout: 20000 });
  check((await page.textContent('#progress')).includes('created: 4'), 'every contact of the export is created');
  check((await page.textContent('#report')).includes('Company: Atelier Lumière, a new company record'), 'the organisation became a company');

  // Activity mapping: a variable inserted at the cursor (keyboard), the live preview, saved.
  await Promise.all([page.waitForURL(`${base}/sources`), page.click('nav >> text=Sources')]);
  await Promise.all([page.waitForURL(/\/sources\/\d+$/), page.click('main a:text-is("Practice")')]);
  await Promise.all([page.waitForURL(/activity-mapping/), page.click('text=Activity mapping')]);
  const subject = page.locator('#activity-mapping input[name=subject]');
  await subject.fill('Call about renewal');
  await subject.focus();
  await subject.evaluate((el) => el.setSelectionRange(5, 5));
  await page.selectOption('#variable-picker', 'outcome');
  await page.focus('#variable-picker');
  await page.keyboard.press('Enter');
  check((await subject.inputValue()) === 'Call {{ outcome }}about renewal', `the variable goes at the cursor, got ${await subject.inputValue()}`);
  await page.waitForFunction(() => (document.querySelector('#preview-subject') || {}).textContent === 'Call answeredabout renewal');
  await page.screenshot({ path: join(shots, 'activity-mapping.png'), fullPage: true });
  await Promise.all([page.waitForURL(/activity-mapping\?type=call/), page.click('#activity-mapping button[type=submit]')]);
  check((await page.textContent('.flash')).includes('Activity mapping for call saved.'), 'the mapping is saved');

  // A contact's timeline: an activity logged from the contact page, without a page load.
  await page.goto(`${base}/contacts?q=ada`);
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('#records >> text=Ada Lovelace')]);
  await page.waitForSelector('#timeline form');
  await page.selectOption('#timeline select[name=type]', 'call');
  await page.fill('#timeline input[name=subject]', 'Renewal call');
  await page.fill('#timeline input[name=outcome]', 'answered');
  await page.fill('#timeline textarea[name=body]', 'Asked for the new price list.');
  await page.click('#timeline button[type=submit]');
  await page.waitForSelector('#timeline li.activity >> text=Renewal call');
  await page.locator('#activities').screenshot({ path: join(shots, 'timeline.png') });

  // Applications: a process, a data link, an application pre-filled, a submitted change.
  await Promise.all([page.waitForURL(`${base}/processes`), page.click('nav >> text=Processes')]);
  await page.fill('input[name=name]', 'Onboarding');
  await Promise.all([page.waitForURL(/\/processes\/\d+$/), page.click('main button:has-text("Create process")')]);
  await page.fill('input[name=title]', 'Your details');
  await Promise.all([page.waitForLoadState('load'), page.click('main button:has-text("Add step")')]);
  await page.fill('input[name=key]', 'phone');
  await page.fill('input[name=label]', 'Phone number');
  await page.selectOption('select[name=item_type]', 'phone');
  await Promise.all([page.waitForLoadState('load'), page.click('main button:has-text("Add item")')]);
  await Promise.all([page.waitForURL(/\/links$/), page.click('text=Data links')]);
  await page.selectOption('select[name=direction]', 'both');
  await page.selectOption('select[name=field_key]', 'phone');
  await page.selectOption('select[name=to_record]', 'always');
  await Promise.all([page.waitForLoadState('load'), page.click('main button:has-text("Save data link")')]);
  check((await page.textContent('#links')).includes('contact.phone'), 'the data link is listed');
  await Promise.all([page.waitForURL(/\/processes\/\d+$/), page.click('nav[aria-label=breadcrumb] >> text=Onboarding')]);
  await page.fill('input[name=record]', 'Grace Hopper');
  await Promise.all([page.waitForURL(/\/applications\/\d+$/), page.click('main button:has-text("Create application")')]);
  const prefilled = await page.inputValue('input[name^=a][type=tel]');
  check(prefilled === '+442079460958', `the phone is pre-filled from the contact, got ${prefilled}`);
  await page.fill('input[name^=a][type=tel]', '+44 20 7946 0123');
  await Promise.all([page.waitForURL(/\/applications\/\d+$/), page.click('button:has-text("Submit this step")')]);
  check((await page.textContent('.flash')).includes('set to +442079460123'), 'the submission updates the contact');
  await page.screenshot({ path: join(shots, 'application.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('hgroup a:has-text("Grace Hopper")')]);
  check((await page.textContent('tr[data-field="phone"]')).includes('+44 20 7946 0123'), 'the record shows the new phone');
  check((await page.textContent('#history')).includes('application #'), 'the history names the application');

  // Desynchronised records: an application proposes three changes (rule "review"); the list
  // marks the contact; a person checks the data: accepts one, keeps one, types a new value.
  await Promise.all([page.waitForURL(`${base}/processes`), page.click('nav >> text=Processes')]);
  await page.fill('input[name=name]', 'Annual review');
  await Promise.all([page.waitForURL(/\/processes\/\d+$/), page.click('main button:has-text("Create process")')]);
  await page.fill('input[name=title]', 'Check your details');
  await page.click('main button:has-text("Add step")');
  await page.waitForSelector('section[data-step="Check your details"]');
  for (const [key, label, type] of [['mobile', 'Mobile', 'phone'], ['work_email', 'Work email', 'email'], ['segment', 'Segment', 'text']]) {
    await page.fill('input[name=key]', key);
    await page.fill('input[name=label]', label);
    await page.selectOption('select[name=item_type]', type);
    await page.click('main button:has-text("Add item")');
    await page.waitForSelector(`#steps code:text-is("${key}")`);
  }
  await Promise.all([page.waitForURL(/\/links$/), page.click('text=Data links')]);
  for (const [item, field] of [['Mobile (phone)', 'phone'], ['Work email (email)', 'email'], ['Segment (text)', 'tag1']]) {
    await page.selectOption('select[name=item_id]', { label: item });
    await page.selectOption('select[name=direction]', 'both');
    await page.selectOption('select[name=field_key]', field);
    await page.selectOption('select[name=to_record]', 'review');
    await page.click('main button:has-text("Save data link")');
    await page.waitForSelector(`#links td:text-is("contact.${field}")`);
  }
  await Promise.all([page.waitForURL(/\/processes\/\d+$/), page.click('nav[aria-label=breadcrumb] >> text=Annual review')]);
  await page.fill('input[name=record]', 'Grace Hopper');
  await Promise.all([page.waitForURL(/\/applications\/\d+$/), page.click('main button:has-text("Create application")')]);
  check((await page.inputValue('main label:has-text("Work email") input')) === 'grace@example.org', 'the email is pre-filled');
  await page.fill('main label:has-text("Mobile") input', '+44 20 7946 0999');
  await page.fill('main label:has-text("Work email") input', 'grace@hopper.example');
  await page.fill('main label:has-text("Segment") input', 'platinum');
  await Promise.all([page.waitForURL(/\/applications\/\d+$/), page.click('button:has-text("Submit this step")')]);
  check((await page.textContent('.flash')).includes('proposed for review'), 'the submission proposes the changes');

  await Promise.all([page.waitForURL(`${base}/contacts`), page.click('nav >> text=Contacts')]);
  const mark = page.locator('#records a.desync-mark');
  check((await mark.count()) === 1, 'one contact is marked desynchronised');
  check((await mark.getAttribute('data-pending')) === '3', 'the mark counts three pending fields');
  check((await mark.textContent()).includes('3 fields to check'), 'the mark has a text alternative');
  check((await page.textContent(`tr:has(a.desync-mark)`)).includes('Grace Hopper'), 'the marked contact is Grace Hopper');
  await page.screenshot({ path: join(shots, 'contacts-desync.png'), fullPage: true });
  await page.click('.list-menu summary');
  await Promise.all([page.waitForURL(/\/desync\?kind=contact$/), page.click('#show-desync')]);
  check((await page.textContent('#desync-records')).trim() === '1' && (await page.textContent('#desync-fields')).trim() === '3', 'the desync view counts one record, three fields');
  await page.screenshot({ path: join(shots, 'desync.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('#desync >> text=Grace Hopper')]);
  check((await page.textContent('#desync-banner')).includes('3 fields'), 'the record page shows the banner');
  await Promise.all([page.waitForURL(/\/records\/\d+\/check$/), page.click('#check-data')]);
  await page.screenshot({ path: join(shots, 'check-data-before.png'), fullPage: true });

  const line = (field) => `#check-lines tr[data-field="${field}"]`;
  await page.check(`${line('phone')} input[value=accept]`);
  await page.check(`${line('tag1')} input[value=keep]`);
  await page.check(`${line('email')} input[value=new]`);
  await page.fill(`${line('email')} input[type=email]`, 'not-an-email');
  await page.evaluate(() => { window.stillThisPage = true; });
  await page.click('#apply');
  await page.waitForSelector('#check-error');
  check((await page.textContent(`${line('email')} .field-error`)).includes('not a valid email address'), 'a bad new value is explained on its line');
  check(await page.isChecked(`${line('phone')} input[value=accept]`), 'the other choices are kept');
  await page.fill(`${line('email')} input[type=email]`, 'grace.hopper@example.org');
  await page.click('#apply');
  await page.waitForSelector('#applied');
  check(await page.evaluate(() => window.stillThisPage === true), 'htmx updated the page in place');
  const applied = await page.textContent('#applied');
  check(applied.includes('accepted +442079460999') && applied.includes('kept the current value') && applied.includes('grace.hopper@example.org'), `each decision is reported, got ${applied}`);
  check(await page.isVisible('#in-step'), 'nothing is left to check');
  await page.screenshot({ path: join(shots, 'check-data.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/records\/\d+$/), page.click('#in-step >> text=Back to the record')]);
  check((await page.textContent('tr[data-field="phone"]')).includes('+44 20 7946 0999'), 'the accepted phone is on the record');
  check((await page.textContent('tr[data-field="email"]')).includes('grace.hopper@example.org'), 'the new email is on the record');
  check((await page.textContent('tr[data-field="tag1"]')).includes('gold'), 'the kept tag is unchanged');
  check(!(await page.isVisible('#desync-banner')), 'the banner is gone');
  check((await page.textContent('#history')).includes('kept the current value'), 'the history shows each decision');

  check(problems.length === 0, `no console errors, got: ${problems.join(' | ')}`);
  console.log(`browser smoke test passed; screenshots in ${shots}`);
} finally {
  await browser.close();
}
