import { get } from '../api.js';
import { h, table, fmtTime, heading } from '../dom.js';

// A fleet's IDevID vendors, read-only: registering one is done with the
// CLI or the API (gatehouse vendor add), by an admin.
export async function render({ params, href }) {
  const fleet = params.fleet;
  const { vendors } = await get('/fleets/' + encodeURIComponent(fleet) + '/idevid-vendors');
  const certs = (cs) => h('ul', { class: 'plain' }, cs.map((c) =>
    h('li', {}, c.subject, h('br'), h('small', { class: 'muted' }, 'sha256 ' + c.sha256_fingerprint + ', until ' + fmtTime(c.not_after)))));
  const crls = (cs) => cs.length ? h('ul', { class: 'plain' }, cs.map((c) =>
    h('li', { class: c.stale ? 'error' : '' }, c.issuer + ' #' + (c.number || '—') + ', next update ' + fmtTime(c.next_update) +
      (c.stale ? ' (STALE: its IDevIDs are refused)' : '')))) : h('span', { class: 'muted' }, 'none');
  const rows = table('vendors-table', [
    { label: 'Name', key: 'name', cell: (v) => v.name },
    { label: 'Profile', key: 'profile', cell: (v) => v.profile },
    { label: 'Device id', key: 'id', cell: (v) => (v.id_prefix || '') + '<' + v.id_from + '>' },
    { label: 'Anchors', key: 'anchors', cell: (v) => certs(v.anchors) },
    { label: 'Intermediates', key: 'intermediates', cell: (v) => certs(v.intermediates) },
    { label: 'CRLs', key: 'crls', cell: (v) => crls(v.crls) },
    { label: 'Allow-list', key: 'allowlist', cell: (v) => (v.require_allowlist ? 'required, ' : 'not required, ') + v.allowlist_size + ' serials' },
    { label: 'Re-enroll', key: 'reenroll', cell: (v) => v.allow_reenroll ? 'allowed' : 'once per IDevID' },
  ], vendors, 'No vendors registered for this fleet.');
  return h('div', {}, heading('IDevID vendors of ' + fleet, h('a', { href: href('/fleets') }, 'All fleets')), rows,
    h('p', { class: 'muted' }, 'Register vendors with gatehouse vendor add (role admin).'));
}
