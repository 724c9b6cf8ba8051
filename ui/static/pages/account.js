import { post } from '../api.js';
import { h, heading, errorBox, field, flash } from '../dom.js';

export async function render({ session }) {
  const msg = h('div', {});
  const current = h('input', { id: 'account-current', type: 'password', required: true, autocomplete: 'current-password' });
  const next = h('input', { id: 'account-new', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const again = h('input', { id: 'account-again', type: 'password', required: true, minlength: 12, autocomplete: 'new-password' });
  const form = h('form', {
    id: 'account-form', class: 'card narrow-left', method: 'post',
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.replaceChildren();
      if (next.value !== again.value) {
        msg.replaceChildren(errorBox({ code: 'invalid_argument', message: 'the two new passwords differ' }, 'account-error'));
        return;
      }
      try {
        await post('/session/password', { current: current.value, new: next.value });
        form.reset();
        flash('Password changed; your other sessions have ended.');
      } catch (e) {
        msg.replaceChildren(errorBox(e, 'account-error'));
      }
    },
  }, h('h2', {}, 'Change your password'), field('Current password', current), field('New password', next, 'At least 12 characters.'),
  field('New password again', again), msg, h('button', { type: 'submit', id: 'account-submit' }, 'Change password'));
  return h('div', {}, heading('Your account'),
    h('p', {}, 'Signed in as ', h('strong', {}, session.user.username), ', role ', h('strong', {}, session.user.role), '.'), form);
}
