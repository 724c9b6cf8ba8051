import { get, qs } from '../api.js';
import { h, table, fmtTime, heading, field } from '../dom.js';

const FIELDS = [
  ['actor', 'Actor', 'user:alice'],
  ['action', 'Action', 'device.revoke'],
  ['object_type', 'Object type', 'device'],
  ['object_id', 'Object id', 'sensor-001'],
];

// datetime-local values are local wall-clock time; the API wants RFC 3339.
const toRFC = (v) => (v ? new Date(v).toISOString().replace(/\.\d+Z$/, 'Z') : '');
const toLocal = (v) => {
  if (!v) return '';
  const d = new Date(v);
  if (isNaN(d)) return '';
  return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export async function render({ query, navigate, href }) {
  const f = Object.fromEntries(['actor', 'action', 'object_type', 'object_id', 'since', 'until', 'limit'].map((k) => [k, query.get(k) || '']));
  const limit = parseInt(f.limit || '200', 10);
  const { events } = await get('/audit' + qs({ ...f, limit }));
  const inputs = Object.fromEntries(FIELDS.map(([k, , ph]) => [k, h('input', { id: 'audit-' + k.replace('_', '-'), testid: 'audit-' + k, value: f[k], placeholder: ph })]));
  const since = h('input', { id: 'audit-since', type: 'datetime-local', testid: 'audit-since', value: toLocal(f.since) });
  const until = h('input', { id: 'audit-until', type: 'datetime-local', testid: 'audit-until', value: toLocal(f.until) });
  const form = h('form', {
    id: 'audit-filters', class: 'filters', role: 'search',
    onsubmit: (ev) => {
      ev.preventDefault();
      navigate('/audit', { ...Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value.trim()])), since: toRFC(since.value), until: toRFC(until.value) });
    },
  }, FIELDS.map(([k, label]) => field(label, inputs[k])), field('From', since), field('Until', until),
  h('div', { class: 'field' }, h('span', { class: 'label-spacer' }, '\u00a0'), h('div', { class: 'row' },
    h('button', { type: 'submit', id: 'audit-submit', testid: 'audit-submit' }, 'Filter'),
    h('a', { class: 'button secondary', href: href('/audit'), id: 'audit-reset' }, 'Reset'))));
  const link = (k, v) => h('a', { href: href('/audit', { ...f, [k]: v }) }, v);
  const list = table('audit-table', [
    { label: 'When (UTC)', key: 'at', cell: (e) => fmtTime(e.at) },
    { label: 'Actor', key: 'actor', cell: (e) => link('actor', e.actor) },
    { label: 'Action', key: 'action', cell: (e) => link('action', e.action) },
    { label: 'Object', key: 'object', cell: (e) => [e.object_type, ' ', e.object_type === 'device'
      ? h('a', { href: href('/devices/' + encodeURIComponent(e.object_id)) }, e.object_id) : h('code', {}, e.object_id)] },
    { label: 'Detail', key: 'detail', cell: (e) => e.detail || '' },
  ], events, 'No audit event matches.');
  return h('div', {}, heading('Audit log', chainBadge()), form, list,
    events.length === limit ? h('p', { class: 'hint' }, `Showing the newest ${limit}; narrow the filters or the time range to see older events.`) : null);
}

// chainBadge shows whether the audit trail's hash chain holds (GET
// /audit/verify). The server walks the whole chain at most every few
// minutes and only new rows in between; the page still does not wait for
// it: the badge fills in when the answer comes. The head (seq and hash) is
// what an operator records elsewhere for `audit verify --expect-head`.
function chainBadge() {
  const badge = h('span', { id: 'audit-chain', testid: 'audit-chain', class: 'badge', title: 'Audit hash chain' }, 'Chain: checking\u2026');
  get('/audit/verify').then((v) => {
    if (v.ok) {
      badge.className = 'badge badge-done';
      badge.textContent = `Chain verified (${v.checked} rows)`;
      if (v.head_seq) badge.title = `Head: seq ${v.head_seq}, hash ${v.head_hash}`;
    } else {
      badge.className = 'badge badge-failed';
      badge.textContent = `Chain broken at ${v.first_broken}`;
      badge.title = `First row failing the check (${v.reason}); run gatehouse audit verify`;
    }
  }, (err) => {
    badge.className = 'badge badge-suspended';
    badge.textContent = 'Chain: not checked';
    badge.title = String(err && err.message || err);
  });
  return badge;
}
