import { get, getOptional, qs } from '../api.js';
import { h, table, badge, fmtTime, fmtRelative, heading, errorBox } from '../dom.js';
import { stackedBars, reasonBars } from '../chart.js';

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

const WINDOWS = {
  hour: { label: 'Last hour', per: 'minute', span: 'the last hour', labelEvery: 10 },
  day: { label: 'Last 24 hours', per: 'hour', span: 'the last 24 hours', labelEvery: 4 },
};
const DECISIONS = [
  { key: 'allow', label: 'Allow', cls: 'allow' },
  { key: 'deny', label: 'Deny', cls: 'deny' },
  { key: 'error', label: 'Error', cls: 'error' },
];
const ENROLLMENTS = [
  { key: 'enrolled', label: 'Enrolled', cls: 'enrolled' },
  { key: 'renewed', label: 'Renewed', cls: 'renewed' },
  { key: 'enroll_failed', label: 'Failed', cls: 'deny' },
];

/** The traffic charts of this server process, for the window in the route. */
async function traffic(href, asked) {
  const w = Object.hasOwn(WINDOWS, asked) ? asked : 'hour';
  const r = await getOptional('/stats/series' + qs({ window: w }));
  if (!r) return h('p', { class: 'muted' }, 'This server does not report traffic series.');
  const win = WINDOWS[w];
  const sum = (k) => r.buckets.reduce((n, b) => n + b[k], 0);
  return h('div', { id: 'traffic-charts', 'data-window': w },
    h('div', { class: 'row toolbar', role: 'group', 'aria-label': 'Time window' },
      Object.entries(WINDOWS).map(([k, v]) => h('a', { href: href('/', { window: k }), class: 'button small' + (k === w ? '' : ' secondary'),
        'aria-current': k === w ? 'true' : null, testid: 'window-' + k }, v.label))),
    h('h3', {}, 'Decisions per ' + win.per, ' ', h('span', { class: 'hint', testid: 'decisions-total' },
      `(${sum('allow')} allowed, ${sum('deny')} denied, ${sum('error')} errors)`)),
    stackedBars({ id: 'decisions-chart', title: 'Broker decisions per ' + win.per + ', ' + win.span, buckets: r.buckets, series: DECISIONS, labelEvery: win.labelEvery }),
    h('h3', {}, 'Enrollments per ' + win.per),
    stackedBars({ id: 'enrollments-chart', title: 'Enrollments and renewals per ' + win.per + ', ' + win.span, buckets: r.buckets, series: ENROLLMENTS, labelEvery: win.labelEvery, height: 150 }),
    h('h3', {}, 'Denies by reason, ' + win.span),
    r.deny_reasons.length
      ? reasonBars({ id: 'deny-reasons-chart', title: 'Requests refused by reason, ' + win.span, rows: r.deny_reasons, cls: 'deny' })
      : h('p', { class: 'muted', id: 'deny-reasons-empty' }, 'No denies in ' + win.span + '.'),
    h('p', { class: 'hint' }, 'Counted by this server process since it started, times in UTC; each replica counts its own. ',
      r.sampled_at ? 'Last sampled ' + fmtTime(r.sampled_at) + '.' : 'Not sampled yet.'));
}

export async function render({ href, query }) {
  const [counts, expiring, charts, denies] = await Promise.all([
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
    panel('traffic', 'Traffic', () => traffic(href, query.get('window'))),
    panel('recent-denies', 'Recent denies', async () => {
      const r = await getOptional('/decisions/recent-denies' + qs({ limit: 20 }));
      if (!r) return h('p', { class: 'muted' }, 'This server does not report recent denies.');
      return h('div', {}, denyTable('denies-table', r.denies, href),
        h('p', { class: 'hint' }, 'The last denies of this server process; a restart clears them.'));
    }),
  ]);
  return h('div', {}, heading('Dashboard'), h('div', { class: 'grid' }, counts, expiring), charts, denies);
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
