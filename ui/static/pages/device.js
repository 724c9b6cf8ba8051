import { get, post, getOptional, qs } from '../api.js';
import { h, table, badge, fmtTime, fmtRelative, heading, errorBox, flash, flashNext, confirmDialog, field } from '../dom.js';
import { denyTable } from './dashboard.js';

// RFC 5280 CRLReason names the API accepts (revoke.Reasons).
export const REASONS = [
  ['unspecified', 'Unspecified'],
  ['keyCompromise', 'Key compromise'],
  ['cACompromise', 'CA compromise'],
  ['affiliationChanged', 'Affiliation changed'],
  ['superseded', 'Superseded'],
  ['cessationOfOperation', 'Cessation of operation'],
  ['privilegeWithdrawn', 'Privilege withdrawn'],
];

// RFC 5280 CRLReason codes, as the API reports them on certificates.
const REASON_CODES = { 0: 'unspecified', 1: 'keyCompromise', 2: 'cACompromise', 3: 'affiliationChanged', 4: 'superseded', 5: 'cessationOfOperation', 9: 'privilegeWithdrawn' };

async function section(id, title, load) {
  let body;
  try { body = await load(); } catch (e) { body = errorBox(e, id + '-error'); }
  return h('section', { class: 'card', id, testid: id }, h('h2', {}, title), body);
}

export async function render({ params, can, navigate, href }) {
  const id = params.id;
  const path = '/devices/' + encodeURIComponent(id);
  const d = await get(path);
  const writable = can('operator');

  async function act(kind, body) {
    try {
      await post(path + '/' + kind, body);
      flashNext(`Device ${id}: ${kind} done.`);
      navigate('/devices/' + id);
    } catch (e) {
      flash(e.code + ': ' + e.message, 'error');
    }
  }

  async function revoke() {
    const reason = h('select', { id: 'revoke-reason', testid: 'revoke-reason' }, REASONS.map(([v, l]) => h('option', { value: v }, l + ' (' + v + ')')));
    const note = h('textarea', { id: 'revoke-note', rows: 3, testid: 'revoke-note' });
    const ok = await confirmDialog({
      id: 'revoke-dialog', title: 'Revoke device ' + id + '?', confirmLabel: 'Revoke', danger: true,
      body: [h('p', {}, 'Every certificate of the device is revoked and its broker sessions are closed. This cannot be undone: the device must enroll again under a new token.'),
        field('Reason', reason), field('Note (audit log)', note)],
    });
    if (ok) act('revoke', { reason: reason.value, note: note.value });
  }
  async function simple(kind, text) {
    const note = h('textarea', { id: kind + '-note', rows: 2, testid: kind + '-note' });
    const ok = await confirmDialog({ id: kind + '-dialog', title: text + ' device ' + id + '?', confirmLabel: text, danger: kind === 'suspend',
      body: [h('p', {}, kind === 'suspend' ? 'The device is refused by every broker until reinstated; its certificates stay valid.' : 'The device may connect again with its current certificate.'), field('Note (audit log)', note)] });
    if (ok) act(kind, { note: note.value });
  }

  const reason = writable ? null : 'Your role (' + (can('viewer') ? 'viewer' : 'none') + ') cannot change devices.';
  const actions = h('div', { class: 'row', id: 'device-actions' },
    h('button', { type: 'button', id: 'device-suspend', testid: 'device-suspend', class: 'secondary', disabled: !writable || d.status !== 'active', title: reason, onclick: () => simple('suspend', 'Suspend') }, 'Suspend'),
    h('button', { type: 'button', id: 'device-reinstate', testid: 'device-reinstate', class: 'secondary', disabled: !writable || d.status !== 'suspended', title: reason, onclick: () => simple('reinstate', 'Reinstate') }, 'Reinstate'),
    h('button', { type: 'button', id: 'device-revoke', testid: 'device-revoke', class: 'danger', disabled: !writable || d.status === 'revoked', title: reason, onclick: revoke }, 'Revoke…'));

  const info = h('section', { class: 'card' },
    h('dl', { class: 'props', id: 'device-props' },
      h('dt', {}, 'Status'), h('dd', { id: 'device-status-value', testid: 'device-status-value' }, badge(d.status)),
      h('dt', {}, 'Fleet'), h('dd', {}, h('a', { href: href('/devices', { fleet: d.fleet }) }, d.fleet)),
      h('dt', {}, 'Profile'), h('dd', {}, d.profile),
      h('dt', {}, 'Identity'), h('dd', {}, h('code', {}, d.identity)),
      h('dt', {}, 'Labels'), h('dd', {}, Object.keys(d.labels).length ? Object.entries(d.labels).map(([k, v]) => h('span', { class: 'label' }, k + '=' + v)) : h('span', { class: 'muted' }, 'none')),
      h('dt', {}, 'Created'), h('dd', {}, fmtTime(d.created_at)),
      h('dt', {}, 'Updated'), h('dd', {}, fmtTime(d.updated_at))),
    writable ? actions : h('p', { class: 'muted', id: 'device-readonly', testid: 'device-readonly' }, reason));

  const [certs, denies, sessions] = await Promise.all([
    section('device-certificates', 'Certificates', async () => {
      const r = await get(path + '/certificates');
      return table('certificates-table', [
        { label: 'Serial', key: 'serial', cell: (c) => h('code', {}, c.serial) },
        // A discarded certificate was signed but never handed out (its
        // enrollment or renewal did not commit): revoked from the start.
        { label: 'Status', key: 'status', cell: (c) => c.discarded
          ? [badge(c.status), ' ', h('small', { class: 'muted', testid: 'cert-discarded', title: 'signed for an enrollment or renewal that did not complete; never handed out' }, 'discarded')]
          : badge(c.status) },
        { label: 'Valid from', key: 'not_before', cell: (c) => fmtTime(c.not_before) },
        { label: 'Valid until', key: 'not_after', cell: (c) => [fmtTime(c.not_after), ' ', h('small', { class: 'muted' }, '(' + fmtRelative(c.not_after) + ')')] },
        { label: 'Revoked', key: 'revoked', cell: (c) => c.revoked_at ? fmtTime(c.revoked_at) + ' (' + (REASON_CODES[c.revocation_reason] || 'reason ' + c.revocation_reason) + ')' : '' },
        { label: 'SHA-256', key: 'fp', cell: (c) => h('code', { class: 'fp', title: c.sha256_fingerprint }, c.sha256_fingerprint.slice(0, 16) + '…') },
      ], r.certificates, 'No certificate issued yet.');
    }),
    section('device-denies', 'Recent denies', async () => {
      const r = await getOptional('/decisions/recent-denies' + qs({ device: id, limit: 20 }));
      if (!r) return h('p', { class: 'muted' }, 'This server does not report recent denies.');
      return denyTable('device-denies-table', r.denies, href);
    }),
    section('device-sessions', 'Broker sessions', async () => {
      const r = await getOptional(path + '/sessions');
      if (!r) return h('p', { class: 'muted', testid: 'sessions-unavailable' }, 'Session status is not available on this server.');
      return table('sessions-table', [
        { label: 'Broker', key: 'broker', cell: (k) => k.broker },
        { label: 'Status', key: 'status', cell: (k) => badge(k.status) },
        { label: 'Reason', key: 'reason', cell: (k) => k.reason },
        { label: 'Attempts', key: 'attempts', cell: (k) => String(k.attempts) },
        { label: 'Last error', key: 'last_error', cell: (k) => k.last_error || '' },
        { label: 'Next attempt', key: 'next_attempt_at', cell: (k) => k.next_attempt_at ? fmtTime(k.next_attempt_at) : '' },
        { label: 'Done', key: 'done_at', cell: (k) => k.done_at ? fmtTime(k.done_at) : '' },
      ], r.kicks || [], 'No session kick requested yet (brokers to kick are configured with the kick.* settings).');
    }),
  ]);
  return h('div', {}, heading('Device ' + id), info, certs, sessions, denies);
}

/**
 * Render a list endpoint whose shape this UI does not pin down: the first
 * array in the body becomes a table with one column per key.
 */
export function genericList(id, body) {
  const rows = Array.isArray(body) ? body : Object.values(body).find(Array.isArray) || [];
  const keys = [...new Set(rows.flatMap((r) => (r && typeof r === 'object' ? Object.keys(r) : [])))];
  const extra = Array.isArray(body) ? [] : Object.entries(body).filter(([, v]) => !Array.isArray(v));
  return h('div', {},
    extra.length ? h('dl', { class: 'props' }, extra.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, fmtValue(k, v))])) : null,
    table(id, keys.map((k) => ({ label: k.replaceAll('_', ' '), key: k, cell: (r) => fmtValue(k, r[k]) })), rows, 'None.'));
}

function fmtValue(k, v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string' && /(_at|_update|^at)$/.test(k) && !isNaN(Date.parse(v))) return fmtTime(v);
  if (typeof v === 'object') return h('code', {}, JSON.stringify(v));
  return String(v);
}
