import { get, post, patch, del } from '../api.js';
import { h, table, badge, fmtTime, heading, errorBox, field, flash, flashNext, confirmDialog } from '../dom.js';

const ROLES = ['viewer', 'operator', 'admin'];

// A random password from the browser's CSPRNG, for "generate".
function randomPassword() {
  const b = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...b)).replaceAll('+', '-').replaceAll('/', '_');
}

export async function render({ can, session, navigate }) {
  if (!can('admin')) {
    return h('div', {}, heading('Users'), h('p', { class: 'muted', id: 'users-forbidden' }, 'Only admins manage users.'));
  }
  const { users } = await get('/users');
  const me = session.user.username;
  const msg = h('div', {});
  const name = h('input', { id: 'user-name', required: true, autocomplete: 'off', testid: 'user-name' });
  const role = h('select', { id: 'user-role', testid: 'user-role' }, ROLES.map((r) => h('option', { value: r }, r)));
  const pass = h('input', { id: 'user-password', required: true, minlength: 12, autocomplete: 'new-password', testid: 'user-password' });
  const created = h('div', { id: 'user-created' });
  const form = h('form', {
    id: 'user-form', class: 'card', method: 'post',
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      try {
        const u = await post('/users', { username: name.value.trim(), password: pass.value, role: role.value });
        flashNext(`User ${u.username} (${u.role}) created. Hand the password over now; it is not shown again.`);
        navigate('/users');
      } catch (e) {
        msg.replaceChildren(errorBox(e, 'user-form-error'));
      }
    },
  }, h('h2', {}, 'New user'),
  h('div', { class: 'grid4' }, field('Username', name, 'lowercase letters, digits, . _ - @'), field('Role', role),
    field('Password', pass, 'At least 12 characters.'),
    h('div', { class: 'field' }, h('span', { class: 'label-spacer' }, '\u00a0'),
      h('button', { type: 'button', class: 'secondary', id: 'user-generate', onclick: () => { pass.type = 'text'; pass.value = randomPassword(); } }, 'Generate password'))),
  msg, h('button', { type: 'submit', id: 'user-submit', testid: 'user-submit' }, 'Create user'), created);

  async function update(u, body, done) {
    try { await patch('/users/' + encodeURIComponent(u.username), body); flashNext(done); navigate('/users'); } catch (e) { flash(e.code + ': ' + e.message, 'error'); }
  }
  async function resetPassword(u) {
    const p = h('input', { id: 'reset-password', minlength: 12, value: randomPassword() });
    if (!await confirmDialog({ id: 'reset-dialog', title: 'New password for ' + u.username, confirmLabel: 'Set password',
      body: [h('p', {}, 'This ends the user’s sessions. Hand the password over now; it is not shown again.'), field('Password', p)] })) return;
    update(u, { password: p.value }, 'Password of ' + u.username + ' changed.');
  }

  const list = table('users-table', [
    { label: 'User', key: 'username', cell: (u) => [u.username, u.username === me ? h('small', { class: 'muted' }, ' (you)') : null] },
    { label: 'Role', key: 'role', cell: (u) => h('select', { 'aria-label': 'Role of ' + u.username, testid: 'user-role-' + u.username, disabled: u.username === me,
      onchange: (ev) => update(u, { role: ev.target.value }, `${u.username} is now ${ev.target.value}.`) },
    ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r))) },
    { label: 'State', key: 'state', cell: (u) => u.disabled ? badge('disabled', 'revoked') : badge('enabled', 'active') },
    { label: 'Last login', key: 'last_login', cell: (u) => fmtTime(u.last_login_at) },
    { label: 'Created', key: 'created', cell: (u) => fmtTime(u.created_at) },
    { label: '', key: 'actions', cell: (u) => u.username === me ? h('a', { href: '#/account' }, 'Change your password') : h('div', { class: 'row' },
      h('button', { type: 'button', class: 'small secondary', testid: 'user-toggle-' + u.username,
        onclick: () => update(u, { disabled: !u.disabled }, `${u.username} ${u.disabled ? 'enabled' : 'disabled'}.`) }, u.disabled ? 'Enable' : 'Disable'),
      h('button', { type: 'button', class: 'small secondary', testid: 'user-reset-' + u.username, onclick: () => resetPassword(u) }, 'Reset password'),
      h('button', { type: 'button', class: 'small danger', testid: 'user-delete-' + u.username, onclick: async () => {
        if (!await confirmDialog({ id: 'confirm-delete-user', title: 'Delete user ' + u.username + '?', body: h('p', {}, 'Their sessions end at once.'), confirmLabel: 'Delete', danger: true })) return;
        try { await del('/users/' + encodeURIComponent(u.username)); flashNext('User deleted.'); navigate('/users'); } catch (e) { flash(e.code + ': ' + e.message, 'error'); }
      } }, 'Delete')) },
  ], users, 'No users.');
  return h('div', {}, heading('Users'), list, form);
}
