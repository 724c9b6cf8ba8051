import { get, qs } from '../api.js';
import { h, table, badge, fmtTime, heading, field } from '../dom.js';

const STATUSES = ['pending', 'active', 'suspended', 'revoked'];
const PAGE = 50;

// Paging is keyset ("after" = the last id of the previous page), which stays
// fast at any depth; "page" only numbers the pages for people.
export async function render({ query, navigate, href }) {
  const f = { q: query.get('q') || '', label: query.get('label') || '', fleet: query.get('fleet') || '', status: query.get('status') || '', after: query.get('after') || '' };
  const page = Math.max(1, parseInt(query.get('page') || '1', 10) || 1);
  const [{ fleets }, res] = await Promise.all([
    get('/fleets'),
    get('/devices' + qs({ q: f.q, label: f.label, fleet: f.fleet, status: f.status, after: f.after, limit: PAGE })),
  ]);

  const q = h('input', { id: 'device-search', type: 'search', value: f.q, placeholder: 'Device id starts with…', testid: 'device-search' });
  const label = h('input', { id: 'device-label', value: f.label, placeholder: 'key=value', testid: 'device-label', pattern: '[^=]+=.*', title: 'key=value' });
  const fleet = h('select', { id: 'device-fleet', testid: 'device-fleet' }, h('option', { value: '' }, 'All fleets'),
    fleets.map((x) => h('option', { value: x.name, selected: x.name === f.fleet }, x.name)));
  const status = h('select', { id: 'device-status', testid: 'device-status' }, h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === f.status }, s)));
  const filters = h('form', {
    id: 'device-filters', class: 'filters', role: 'search',
    onsubmit: (ev) => { ev.preventDefault(); navigate('/devices', { q: q.value.trim(), label: label.value.trim(), fleet: fleet.value, status: status.value }); },
  }, field('Device id', q), field('Label', label), field('Fleet', fleet), field('Status', status),
  h('div', { class: 'field' }, h('span', { class: 'label-spacer' }, '\u00a0'), h('button', { type: 'submit', id: 'device-filter-submit', testid: 'device-filter-submit' }, 'Apply')));
  fleet.addEventListener('change', () => filters.requestSubmit());
  status.addEventListener('change', () => filters.requestSubmit());

  const list = table('devices-table', [
    { label: 'Device', key: 'id', cell: (d) => h('a', { href: href('/devices/' + encodeURIComponent(d.id)), testid: 'device-link-' + d.id }, d.id) },
    { label: 'Fleet', key: 'fleet', cell: (d) => d.fleet },
    { label: 'Profile', key: 'profile', cell: (d) => d.profile },
    { label: 'Status', key: 'status', cell: (d) => badge(d.status) },
    { label: 'Labels', key: 'labels', cell: (d) => Object.entries(d.labels).map(([k, v]) => h('a', { class: 'label', href: href('/devices', { label: k + '=' + v }) }, k + '=' + v)) },
    { label: 'Updated', key: 'updated', cell: (d) => fmtTime(d.updated_at) },
  ], res.devices, 'No device matches.');

  const base = { q: f.q, label: f.label, fleet: f.fleet, status: f.status };
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? h('a', { href: href('/devices', base), id: 'page-first', testid: 'page-first' }, '« First page') : null,
    page > 1 ? h('button', { type: 'button', class: 'secondary small', id: 'page-prev', testid: 'page-prev', onclick: () => history.back() }, '‹ Previous') : null,
    h('span', { id: 'page-number', testid: 'page-number' }, 'Page ' + page),
    res.next ? h('a', { href: href('/devices', { ...base, after: res.next, page: page + 1 }), id: 'page-next', testid: 'page-next' }, 'Next ›') : null);

  return h('div', {}, heading('Devices'), filters, list, pager,
    h('p', { class: 'hint' }, 'Device id matches the start of an id; Label matches one label exactly (key=value). Devices are created by enrollment (', h('code', {}, 'gatehouse enroll'), ') or the API.'));
}
