import { get, getOptional, qs } from '../api.js';
import { h, table, badge, fmtTime, fmtRelative, heading, errorBox } from '../dom.js';

const STATUSES = ['active', 'pending', 'suspended', 'revoked'];

// Each panel loads on its own, so one missing endpoint does not blank the page.
async function panel(id, title, load) {
  let body;
  try {
    body = await load();
  } catch (e) {
    body = errorBox(e, id + '-error');
  }
  return h('section', { class: 'card', id, testid: id }, h('h2', {}, title), body);
}

export async function render({ href }) {
  const [counts, expiring, denies] = await Promise.all([
    panel('device-counts', 'Devices', async () => {
      const s = await get('/stats');
      const d = s.devices;
      return h('div', {},
        h('div', { class: 'stats' },
          h('a', { class: 'stat', href: href('/devices'), testid: 'stat-total' }, h('span', { class: 'stat-n' }, d.total), h('span', {}, 'total')),
          STATUSES.map((st) => h('a', { class: 'stat stat-' + st, href: href('/devices', { status: st }), testid: 'stat-' + st },
            h('span', { class: 'stat-n' }, d.by_status[st] || 0), h('span', {}, st)))),
        h('h3', {}, 'By fleet'),
        table('fleet-counts', [
          { label: 'Fleet', key: 'fleet', cell: (f) => h('a', { href: href('/devices', { fleet: f.fleet }) }, f.fleet) },
          { label: 'Total', key: 'total', cell: (f) => f.total },
          ...STATUSES.map((st) => ({ label: st[0].toUpperCase() + st.slice(1), key: st, cell: (f) => f.by_status[st] || 0 })),
        ], d.by_fleet, 'No devices yet.'),
        h('p', { class: 'hint' }, 'Active policy version: ', s.policy_version ? h('a', { href: href('/policies/' + s.policy_version) }, 'v' + s.policy_version) : 'none'));
    }),
    panel('expiring-certificates', 'Certificates expiring within 7 days', async () => {
      const r = await get('/certificates' + qs({ expiring_within: '168h', limit: 50 }));
      return table('expiring-table', [
        { label: 'Device', key: 'device', cell: (c) => h('a', { href: href('/devices/' + encodeURIComponent(c.device_id)) }, c.device_id) },
        { label: 'Serial', key: 'serial', cell: (c) => h('code', {}, c.serial) },
        { label: 'Expires', key: 'not_after', cell: (c) => h('span', { title: fmtTime(c.not_after) }, fmtRelative(c.not_after)) },
      ], r.certificates, 'No certificate expires in the next 7 days.');
    }),
    panel('recent-denies', 'Recent denies', async () => {
      const r = await getOptional('/decisions/recent-denies' + qs({ limit: 20 }));
      if (!r) return h('p', { class: 'muted' }, 'This server does not report recent denies.');
      return h('div', {}, denyTable('denies-table', r.denies, href),
        h('p', { class: 'hint' }, 'The last denies of this server process; a restart clears them.'));
    }),
  ]);
  return h('div', {}, heading('Dashboard'), h('div', { class: 'grid' }, counts, expiring), denies);
}

/** A table of deny records; shared with the device page. */
export function denyTable(id, denies, href) {
  return table(id, [
    { label: 'When', key: 'at', cell: (d) => h('span', { title: fmtTime(d.at) }, fmtRelative(d.at)) },
    { label: 'Device', key: 'device', cell: (d) => d.device ? h('a', { href: href('/devices/' + encodeURIComponent(d.device)) }, d.device) : h('span', { class: 'muted' }, '(none)') },
    { label: 'Action', key: 'action', cell: (d) => d.action },
    { label: 'Topic', key: 'topic', cell: (d) => d.topic ? h('code', {}, d.topic) : '' },
    { label: 'Reason', key: 'reason', cell: (d) => [badge('deny'), ' ', d.error ? 'error: ' + d.error : d.reason] },
    { label: 'Policy', key: 'policy', cell: (d) => d.policy_version ? 'v' + d.policy_version : '' },
  ], denies, 'No denies recorded.');
}
