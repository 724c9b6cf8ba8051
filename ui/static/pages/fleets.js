import { get, post, patch, del } from '../api.js';
import { h, table, fmtTime, heading, errorBox, field, flash, flashNext, confirmDialog } from '../dom.js';

export async function render({ can, href, navigate }) {
  const { fleets } = await get('/fleets');
  const writable = can('operator');
  const msg = h('div', { id: 'fleet-form-msg' });

  const name = h('input', { id: 'fleet-name', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', testid: 'fleet-name' });
  const desc = h('input', { id: 'fleet-description', testid: 'fleet-description' });
  const submit = h('button', { type: 'submit', id: 'fleet-submit', testid: 'fleet-submit' }, 'Create fleet');
  const cancel = h('button', { type: 'button', id: 'fleet-cancel', class: 'secondary', hidden: true, onclick: () => reset() }, 'Cancel');
  let editing = null;
  const title = h('h2', { id: 'fleet-form-title' }, 'New fleet');
  function reset() {
    editing = null;
    name.disabled = false; name.value = ''; desc.value = '';
    title.textContent = 'New fleet'; submit.textContent = 'Create fleet'; cancel.hidden = true;
  }
  const form = h('form', {
    id: 'fleet-form', class: 'card',
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      try {
        if (editing) {
          await patch('/fleets/' + encodeURIComponent(editing), { description: desc.value });
          flashNext('Fleet ' + editing + ' updated.');
        } else {
          await post('/fleets', { name: name.value, description: desc.value });
          flashNext('Fleet ' + name.value + ' created.');
        }
        navigate('/fleets');
      } catch (e) {
        msg.replaceChildren(errorBox(e, 'fleet-form-error'));
      }
    },
  }, title, field('Name', name, 'Letters, digits, dot, dash and underscore, up to 64; part of every device identity, so it cannot change.'),
  field('Description', desc), msg, h('div', { class: 'row' }, submit, cancel));

  const rows = table('fleets-table', [
    { label: 'Name', key: 'name', cell: (f) => h('a', { href: href('/devices', { fleet: f.name }) }, f.name) },
    { label: 'Description', key: 'description', cell: (f) => f.description },
    { label: 'Created', key: 'created', cell: (f) => fmtTime(f.created_at) },
    { label: 'IDevID vendors', key: 'vendors', cell: (f) => h('a', { href: href('/fleets/' + encodeURIComponent(f.name) + '/vendors'), testid: 'fleet-vendors-' + f.name }, 'Vendors') },
    { label: '', key: 'actions', cell: (f) => writable ? h('div', { class: 'row' },
      h('button', { type: 'button', class: 'small secondary', testid: 'fleet-edit-' + f.name, onclick: () => {
        editing = f.name; name.value = f.name; name.disabled = true; desc.value = f.description;
        title.textContent = 'Edit fleet ' + f.name; submit.textContent = 'Save'; cancel.hidden = false; desc.focus();
      } }, 'Edit'),
      h('button', { type: 'button', class: 'small danger', testid: 'fleet-delete-' + f.name, onclick: async () => {
        if (!await confirmDialog({ id: 'confirm-delete-fleet', title: 'Delete fleet ' + f.name + '?', body: h('p', {}, 'Only an empty fleet can be deleted.'), confirmLabel: 'Delete', danger: true })) return;
        try { await del('/fleets/' + encodeURIComponent(f.name)); flashNext('Fleet deleted.'); navigate('/fleets'); } catch (e) { flash(e.code + ': ' + e.message, 'error'); }
      } }, 'Delete')) : '' },
  ], fleets, 'No fleets yet.');

  return h('div', {}, heading('Fleets'), rows, writable ? form : h('p', { class: 'muted' }, 'Your role can view fleets only.'));
}
