import { get, qs } from '../api.js';
import { h, heading, errorBox, field } from '../dom.js';

export async function render({ query, navigate }) {
  const { versions } = await get('/policies');
  versions.sort((a, b) => b.version - a.version);
  const from = query.get('from') || '';
  const to = query.get('to') || '';
  const sel = (id, cur) => h('select', { id, testid: id }, versions.map((v) => h('option', { value: v.version, selected: String(v.version) === cur }, 'v' + v.version + (v.active ? ' (active)' : ''))));
  const a = sel('diff-from', from);
  const b = sel('diff-to', to);
  const form = h('form', { class: 'filters', id: 'diff-form', onsubmit: (ev) => { ev.preventDefault(); navigate('/policies/diff', { from: a.value, to: b.value }); } },
    field('From', a), field('To', b), h('div', { class: 'field' }, h('span', { class: 'label-spacer' }, '\u00a0'), h('button', { type: 'submit', id: 'diff-submit' }, 'Compare')));
  let out = h('p', { class: 'muted' }, 'Pick two versions.');
  if (from && to) {
    try {
      const d = await get('/policies/diff' + qs({ from, to }));
      out = d.diff
        ? h('pre', { class: 'diff', id: 'diff-output', testid: 'diff-output' }, d.diff.split('\n').map((l) =>
          h('span', { class: l.startsWith('+') && !l.startsWith('+++') ? 'add' : l.startsWith('-') && !l.startsWith('---') ? 'del' : l.startsWith('@@') ? 'hunk' : '' }, l + '\n')))
        : h('p', { id: 'diff-output', class: 'muted' }, 'The two versions are identical.');
    } catch (e) { out = errorBox(e); }
  }
  return h('div', {}, heading('Compare policy versions'), form, out);
}
