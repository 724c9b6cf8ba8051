import { api } from '../api.js';
import { h, errorBox } from '../dom.js';
import { signedIn } from '../app.js';

export async function render() {
  const err = h('div', { id: 'login-error-slot' });
  const user = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, testid: 'login-username' });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, testid: 'login-password' });
  const submit = h('button', { type: 'submit', id: 'login-submit', testid: 'login-submit' }, 'Sign in');
  const form = h('form', {
    id: 'login-form', class: 'card narrow', method: 'post', // never a GET with the password in the URL
    onsubmit: async (ev) => {
      ev.preventDefault();
      submit.disabled = true;
      err.replaceChildren();
      try {
        signedIn(await api('POST', '/session', { username: user.value, password: pass.value }));
      } catch (e) {
        pass.value = '';
        err.replaceChildren(errorBox(e, 'login-error'));
        pass.focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', { id: 'page-title' }, 'Sign in'),
  h('div', { class: 'field' }, h('label', { for: 'login-username' }, 'Username'), user),
  h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), pass),
  err,
  submit,
  h('p', { class: 'hint' }, 'The first admin’s password is printed once by ', h('code', {}, 'gatehouse init'), '.'));
  queueMicrotask(() => user.focus());
  return h('section', { class: 'login' }, form);
}
