import { get, post, getOptional, ApiError } from '../api.js';
import { h, table, badge, fmtTime, heading, errorBox, field, flash, confirmDialog } from '../dom.js';
import { REASONS } from './device.js';

/** CSV text of a batch's tokens, the same columns as the API's CSV form. */
export function tokensCSV(batch, tokens) {
  const esc = (v) => (/[",\r\n]/.test(v) ? '"' + v.replaceAll('"', '""') + '"' : v);
  const rows = [['token', 'device_id', 'batch_id', 'fleet', 'profile', 'expires_at']];
  for (const t of tokens) rows.push([t.token, t.device_id || '', batch.id, batch.fleet, batch.profile, batch.expires_at]);
  return rows.map((r) => r.map((v) => esc(String(v))).join(',')).join('\r\n') + '\r\n';
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// Poll a revocation job until it finishes, updating el with its progress.
async function watchJob(id, el) {
  for (;;) {
    let j;
    try { j = await get('/revocation-jobs/' + encodeURIComponent(id)); } catch (e) { el.replaceChildren(errorBox(e, 'job-error')); return; }
    el.replaceChildren(h('span', { id: 'job-progress', testid: 'job-progress', 'data-status': j.status }, `Revocation job ${j.id}: ${j.status}, ${j.done} of ${j.total} devices (${j.revoked} revoked)`),
      ...[j.total ? h('progress', { max: j.total, value: j.done }) : null, j.error ? h('span', { class: 'fail' }, ' ' + j.error) : null].filter(Boolean));
    if (j.status !== 'running') return j;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function render({ can, navigate }) {
  const writable = can('operator');
  const [{ fleets }, { profiles }, { token_batches: batches }] = await Promise.all([get('/fleets'), get('/profiles'), get('/token-batches?limit=200')]);
  const result = h('div', { id: 'batch-result' });
  const msg = h('div', {});
  const fleet = h('select', { id: 'batch-fleet', required: true, testid: 'batch-fleet' }, fleets.map((f) => h('option', { value: f.name }, f.name)));
  const profile = h('select', { id: 'batch-profile', required: true, testid: 'batch-profile' }, profiles.map((p) => h('option', { value: p.name }, p.name)));
  const count = h('input', { id: 'batch-count', type: 'number', min: 1, max: 100000, value: '10', required: true, testid: 'batch-count' });
  const ttl = h('input', { id: 'batch-ttl', value: '168h', required: true, testid: 'batch-ttl' });
  const submit = h('button', { type: 'submit', id: 'batch-submit', testid: 'batch-submit' }, 'Create batch');
  const form = h('form', {
    id: 'batch-form', class: 'card',
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      submit.disabled = true;
      try {
        const r = await post('/token-batches', { fleet: fleet.value, profile: profile.value, count: parseInt(count.value, 10), ttl: ttl.value.trim() });
        const name = 'gatehouse-tokens-' + r.batch.id + '.csv';
        const csv = tokensCSV(r.batch, r.tokens);
        result.replaceChildren(h('section', { class: 'card notice', testid: 'batch-created' },
          h('h2', {}, `Batch ${r.batch.id}: ${r.tokens.length} tokens`),
          h('p', { class: 'warn' }, h('strong', {}, 'Download the tokens now. '), 'The server keeps only their hashes: they are shown once and can never be retrieved again.'),
          h('button', { type: 'button', id: 'batch-download', testid: 'batch-download', onclick: () => download(name, csv) }, 'Download CSV'),
          h('details', {}, h('summary', {}, 'Show tokens'), h('pre', { id: 'batch-tokens', class: 'tokens' }, r.tokens.map((t) => t.token).join('\n')))));
        flash('Token batch created; download its CSV now.');
        refreshList();
      } catch (e) {
        msg.replaceChildren(errorBox(e, 'batch-form-error'));
      } finally {
        submit.disabled = false;
      }
    },
  }, h('h2', {}, 'New token batch'),
  h('div', { class: 'grid4' }, field('Fleet', fleet), field('Profile', profile), field('Count', count), field('Valid for', ttl, 'e.g. 24h, 168h')),
  msg, submit);

  const jobBox = h('div', { id: 'batch-job', class: 'job', role: 'status' });
  async function revokeBatch(b) {
    const reason = h('select', { id: 'batch-revoke-reason', testid: 'batch-revoke-reason' }, REASONS.map(([v, l]) => h('option', { value: v }, l)));
    const note = h('textarea', { id: 'batch-revoke-note', rows: 2 });
    if (!await confirmDialog({ id: 'batch-revoke-dialog', title: 'Revoke batch ' + b.id + '?', confirmLabel: 'Revoke batch', danger: true,
      body: [h('p', {}, 'Unused tokens stop working, and every device enrolled with this batch is revoked.'), field('Reason', reason), field('Note', note)] })) return;
    try {
      const j = await post('/token-batches/' + encodeURIComponent(b.id) + '/revoke', { reason: reason.value, note: note.value });
      await watchJob(j.id, jobBox);
      refreshList();
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405) && e.code !== 'not_found') flash('Batch revocation is not available on this server.', 'error');
      else flash(e.code + ': ' + e.message, 'error');
    }
  }

  const listBox = h('div', {});
  function listTable(bs) {
    return table('batches-table', [
      { label: 'Batch', key: 'id', cell: (b) => h('code', {}, b.id) },
      { label: 'Fleet', key: 'fleet', cell: (b) => b.fleet },
      { label: 'Profile', key: 'profile', cell: (b) => b.profile },
      { label: 'Tokens', key: 'count', cell: (b) => b.count },
      { label: 'Used', key: 'used', cell: (b) => b.used },
      { label: 'Unused', key: 'unused', cell: (b) => b.count - b.used },
      { label: 'Expires', key: 'expires', cell: (b) => fmtTime(b.expires_at) },
      { label: 'Created by', key: 'created_by', cell: (b) => b.created_by },
      { label: 'State', key: 'state', cell: (b) => b.revoked_at ? badge('revoked') : new Date(b.expires_at) < new Date() ? badge('expired') : badge('open', 'active') },
      { label: '', key: 'actions', cell: (b) => writable && !b.revoked_at ? h('button', { type: 'button', class: 'small danger', testid: 'batch-revoke-' + b.id, onclick: () => revokeBatch(b) }, 'Revoke') : '' },
    ], bs, 'No batches yet.');
  }
  listBox.append(listTable(batches));
  async function refreshList() {
    try { listBox.replaceChildren(listTable((await get('/token-batches?limit=200')).token_batches)); } catch (e) { listBox.replaceChildren(errorBox(e)); }
  }

  const jobs = await getOptional('/revocation-jobs?limit=5').catch(() => null);
  return h('div', {}, heading('Token batches'),
    writable ? form : h('p', { class: 'muted' }, 'Your role can view batches only.'),
    result, jobBox, h('h2', {}, 'Batches'), listBox,
    jobs && jobs.jobs && jobs.jobs.length ? h('p', { class: 'hint' }, 'Batch revocations run as jobs; see ', h('a', { href: '#/revocations' }, 'Revocations'), '.') : null);
}
