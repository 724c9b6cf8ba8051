import { get, post, put, del } from '../api.js';
import { h, table, heading, errorBox, field, flash, flashNext, confirmDialog } from '../dom.js';

const KEY_TYPES = ['P-256', 'P-384', 'Ed25519', 'RSA'];
const ID_SOURCES = [['token', 'token (or the request; else Gatehouse names it)'], ['csr_serial_number', "CSR subject's serialNumber"]];

// Go prints durations as 720h0m0s; people write 720h.
function shortDur(s) { return (s || '').replace(/h0m0s$/, 'h').replace(/m0s$/, 'm'); }

export async function render({ can, navigate }) {
  const { profiles } = await get('/profiles');
  const writable = can('operator');
  const msg = h('div', {});
  const name = h('input', { id: 'profile-name', required: true, testid: 'profile-name' });
  const keys = KEY_TYPES.map((k) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', id: 'profile-key-' + k, value: k, testid: 'profile-key-' + k }), ' ', k));
  const validity = h('input', { id: 'profile-validity', required: true, placeholder: '720h', testid: 'profile-validity' });
  const renew = h('input', { id: 'profile-renew-window', placeholder: 'a third of validity', testid: 'profile-renew-window' });
  const grace = h('input', { id: 'profile-superseded-grace', placeholder: '1h', testid: 'profile-superseded-grace' });
  const sleepy = h('input', { id: 'profile-renew-after-expiry', placeholder: '0', testid: 'profile-renew-after-expiry' });
  const keygen = h('input', { type: 'checkbox', id: 'profile-server-keygen', testid: 'profile-server-keygen' });
  const idFrom = h('select', { id: 'profile-device-id-from', testid: 'profile-device-id-from' }, ID_SOURCES.map(([v, l]) => h('option', { value: v }, l)));
  const roles = h('input', { id: 'profile-roles', placeholder: 'telemetry, command', testid: 'profile-roles' });
  const title = h('h2', {}, 'New profile');
  const submit = h('button', { type: 'submit', id: 'profile-submit', testid: 'profile-submit' }, 'Create profile');
  let editing = null;
  function fill(p) {
    editing = p ? p.name : null;
    name.value = p ? p.name : ''; name.disabled = !!p;
    for (const l of keys) { const i = l.querySelector('input'); i.checked = p ? p.key_types.includes(i.value) : i.value === 'P-256'; }
    validity.value = p ? shortDur(p.validity) : '';
    renew.value = p ? shortDur(p.renew_window) : '';
    grace.value = p ? shortDur(p.superseded_grace) : '';
    sleepy.value = p ? shortDur(p.renew_after_expiry) : '';
    keygen.checked = p ? p.server_keygen : false;
    idFrom.value = p ? p.device_id_from : 'token';
    roles.value = p ? p.roles.join(', ') : '';
    title.textContent = p ? 'Edit profile ' + p.name : 'New profile';
    submit.textContent = p ? 'Save' : 'Create profile';
  }
  fill(null);
  const form = h('form', {
    id: 'profile-form', class: 'card',
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      const body = {
        name: name.value,
        key_types: keys.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value),
        validity: validity.value.trim(),
        renew_window: renew.value.trim(),
        superseded_grace: grace.value.trim(),
        renew_after_expiry: sleepy.value.trim(),
        server_keygen: keygen.checked,
        device_id_from: idFrom.value,
        roles: roles.value.split(',').map((s) => s.trim()).filter(Boolean),
      };
      try {
        if (editing) await put('/profiles/' + encodeURIComponent(editing), body);
        else await post('/profiles', body);
        flashNext('Profile ' + body.name + ' saved.');
        navigate('/profiles');
      } catch (e) {
        msg.replaceChildren(errorBox(e, 'profile-form-error'));
      }
    },
  }, title,
  field('Name', name),
  h('fieldset', { class: 'field' }, h('legend', {}, 'Allowed key types'), keys),
  field('Validity', validity, 'Certificate lifetime, e.g. 720h (30 days).'),
  field('Renewal window', renew, 'How long before expiry a device may renew, e.g. 240h. Empty: a third of the validity.'),
  field('Superseded grace', grace, 'How long a certificate replaced by a renewal stays valid before it is revoked (reason superseded), e.g. 1h; 0 revokes it at renewal. Empty: 1h for a new profile, unchanged when editing.'),
  field('Renew after expiry', sleepy, 'How long after expiry a sleepy device may still renew, by proof of its expired key, if its certificate was never revoked, e.g. 30d; 0 never. Empty: 0 for a new profile, unchanged when editing.'),
  h('label', { class: 'check' }, keygen, ' EST server keygen: the server may generate a device\'s key (serverkeygen); off keeps keys on devices only'),
  field('Device id from', idFrom, 'Where the device id comes from when the token fixes none, over the API and EST alike.'),
  field('Roles', roles, 'Comma-separated roles written into certificates; policies grant by role.'),
  msg, h('div', { class: 'row' }, submit, h('button', { type: 'button', class: 'secondary', id: 'profile-cancel', onclick: () => fill(null) }, 'Clear')));

  const list = table('profiles-table', [
    { label: 'Name', key: 'name', cell: (p) => p.name },
    { label: 'Key types', key: 'key_types', cell: (p) => p.key_types.join(', ') },
    { label: 'Validity', key: 'validity', cell: (p) => shortDur(p.validity) },
    { label: 'Renewal window', key: 'renew_window', cell: (p) => shortDur(p.renew_window) },
    { label: 'Superseded grace', key: 'superseded_grace', cell: (p) => shortDur(p.superseded_grace) },
    { label: 'Renew after expiry', key: 'renew_after_expiry', cell: (p) => shortDur(p.renew_after_expiry) },
    { label: 'EST server keygen', key: 'server_keygen', cell: (p) => (p.server_keygen ? 'on' : 'off') },
    { label: 'Device id from', key: 'device_id_from', cell: (p) => p.device_id_from },
    { label: 'Roles', key: 'roles', cell: (p) => p.roles.join(', ') || h('span', { class: 'muted' }, 'none') },
    { label: '', key: 'actions', cell: (p) => writable ? h('div', { class: 'row' },
      h('button', { type: 'button', class: 'small secondary', testid: 'profile-edit-' + p.name, onclick: () => { fill(p); validity.focus(); } }, 'Edit'),
      h('button', { type: 'button', class: 'small danger', testid: 'profile-delete-' + p.name, onclick: async () => {
        if (!await confirmDialog({ id: 'confirm-delete-profile', title: 'Delete profile ' + p.name + '?', body: h('p', {}, 'Only a profile no device uses can be deleted.'), confirmLabel: 'Delete', danger: true })) return;
        try { await del('/profiles/' + encodeURIComponent(p.name)); flashNext('Profile deleted.'); navigate('/profiles'); } catch (e) { flash(e.code + ': ' + e.message, 'error'); }
      } }, 'Delete')) : '' },
  ], profiles, 'No profiles yet.');
  return h('div', {}, heading('Profiles'), list, writable ? form : h('p', { class: 'muted' }, 'Your role can view profiles only.'));
}
