import { get, post } from '../api.js';
import { h, table, badge, fmtTime, heading, flash, flashNext, confirmDialog } from '../dom.js';

/** Activate a version (admin). Shared with the policy page. */
export async function activate(version, active, navigate) {
  const rollback = active && version < active;
  if (!await confirmDialog({ id: 'activate-dialog', title: (rollback ? 'Roll back to' : 'Activate') + ' policy v' + version + '?',
    body: h('p', {}, 'Every broker decision follows this version at once. Its tests run first; activation is refused if any fails.'),
    confirmLabel: rollback ? 'Roll back' : 'Activate' })) return false;
  try {
    const r = await post('/policies/' + version + '/activate', {});
    flashNext(`Policy v${r.active} is active (${r.tests.passed} tests passed).`, 'ok', 'flash-activated-' + r.active);
    navigate('/policies/' + version);
    return true;
  } catch (e) {
    const t = e.body && e.body.tests;
    flash(e.code + ': ' + e.message + (t ? ` (${t.failed} failed, ${t.passed} passed)` : ''), 'error');
    return false;
  }
}

export async function render({ can, navigate, href }) {
  const { versions, active } = await get('/policies');
  versions.sort((a, b) => b.version - a.version);
  const admin = can('admin');
  const list = table('policies-table', [
    { label: 'Version', key: 'version', cell: (v) => h('a', { href: href('/policies/' + v.version), testid: 'policy-link-' + v.version }, 'v' + v.version) },
    { label: 'State', key: 'state', cell: (v) => v.active ? badge('active') : '' },
    { label: 'Comment', key: 'comment', cell: (v) => v.comment },
    { label: 'Created by', key: 'created_by', cell: (v) => v.created_by },
    { label: 'Created', key: 'created_at', cell: (v) => fmtTime(v.created_at) },
    { label: 'Digest', key: 'digest', cell: (v) => h('code', { title: v.digest }, v.digest.slice(0, 12)) },
    { label: '', key: 'actions', cell: (v) => h('div', { class: 'row' },
      v.version > 1 ? h('a', { class: 'button small secondary', href: href('/policies/diff', { from: v.version - 1, to: v.version }) }, 'Diff vs v' + (v.version - 1)) : null,
      admin && !v.active ? h('button', { type: 'button', class: 'small', testid: 'policy-activate-' + v.version,
        onclick: () => activate(v.version, active, navigate) }, active && v.version < active ? 'Roll back' : 'Activate') : null) },
  ], versions, 'No policy versions.');
  return h('div', {},
    heading('ACL policies', can('operator') ? h('a', { class: 'button', href: href('/policies/new', { from: active || '' }), id: 'policy-new', testid: 'policy-new' }, 'New version') : null,
      h('a', { class: 'button secondary', href: href('/policies/diff', { from: versions[1] ? versions[1].version : '', to: versions[0] ? versions[0].version : '' }), id: 'policy-diff', testid: 'policy-diff' }, 'Compare versions')),
    h('p', { class: 'hint' }, 'Active version: ', active ? h('strong', { id: 'active-version', testid: 'active-version' }, 'v' + active) : 'none',
      '. Versions are immutable: edit by saving a new version, then activate it (admins). Roll back by activating an older version.'),
    list);
}
