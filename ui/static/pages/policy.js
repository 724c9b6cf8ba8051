import { get, post } from '../api.js';
import { h, table, badge, fmtTime, heading, errorBox, field, flashNext } from '../dom.js';
import { activate } from './policies.js';

/**
 * A source editor: a textarea with a line-number gutter. setProblems marks
 * lines in the gutter and lists each problem with its line and column;
 * clicking a problem selects that line in the text.
 */
function sourceEditor(id, label, text, readonly) {
  const ta = h('textarea', { id, class: 'code', spellcheck: 'false', wrap: 'off', autocapitalize: 'off', readonly, testid: id, 'aria-describedby': id + '-problems' });
  ta.value = text;
  const gutter = h('div', { class: 'gutter', id: id + '-gutter', testid: id + '-gutter', 'aria-hidden': 'true' });
  const problems = h('ul', { class: 'problems', id: id + '-problems', testid: id + '-problems' });
  let marks = new Map();
  function drawGutter() {
    const n = ta.value.split('\n').length;
    const lines = [];
    for (let i = 1; i <= n; i++) {
      const m = marks.get(i);
      lines.push(h('div', { class: m ? 'ln ln-err' : 'ln', 'data-line': i, title: m ? m.join('\n') : null }, m ? '● ' + i : String(i)));
    }
    gutter.replaceChildren(...lines);
    gutter.scrollTop = ta.scrollTop;
  }
  function selectLine(line) {
    const starts = [0];
    for (let i = 0; i < ta.value.length; i++) if (ta.value[i] === '\n') starts.push(i + 1);
    const s = starts[line - 1] ?? 0;
    const e = starts[line] !== undefined ? starts[line] - 1 : ta.value.length;
    ta.focus();
    ta.setSelectionRange(s, e);
    const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
    ta.scrollTop = Math.max(0, (line - 3) * lh);
  }
  ta.addEventListener('input', () => { if (marks.size) { marks = new Map(); problems.replaceChildren(); } drawGutter(); });
  ta.addEventListener('scroll', () => { gutter.scrollTop = ta.scrollTop; });
  drawGutter();
  const el = h('div', { class: 'editor-block' },
    h('label', { for: id, class: 'editor-label' }, label),
    h('div', { class: 'editor' }, gutter, ta),
    problems);
  return {
    el, ta,
    /** items: [{line, column, message, kind}] */
    setProblems(items) {
      marks = new Map();
      for (const p of items) {
        if (!p.line) continue;
        marks.set(p.line, [...(marks.get(p.line) || []), p.message]);
      }
      problems.replaceChildren(...items.map((p, i) => h('li', { class: 'problem problem-' + (p.kind || 'error'), testid: 'problem', 'data-line': p.line || '', 'data-module': id },
        p.line ? h('button', { type: 'button', class: 'link', id: id + '-problem-' + i, onclick: () => selectLine(p.line) },
          'Line ' + p.line + (p.column ? ', column ' + p.column : '')) : h('span', {}, 'Whole module'),
        ': ', p.message)));
      drawGutter();
    },
  };
}

export async function render({ params, query, can, navigate, href }) {
  const isNew = params.version === 'new';
  const { active } = await get('/policies');
  const fromV = isNew ? parseInt(query.get('from') || active || '0', 10) : parseInt(params.version, 10);
  const pv = fromV ? await get('/policies/' + fromV) : { policy: 'package gatehouse\n', tests: '', comment: '' };
  const writable = can('operator');
  const admin = can('admin');

  const pol = sourceEditor('policy-source', 'Policy (Rego)', pv.policy, !writable);
  const tests = sourceEditor('policy-tests', 'Tests (Rego, rules named test_…)', pv.tests, !writable);
  const comment = h('input', { id: 'policy-comment', testid: 'policy-comment', placeholder: 'What changed and why', value: isNew ? '' : '' });
  const status = h('div', { id: 'policy-status', role: 'status', testid: 'policy-status' });
  const testOut = h('div', { id: 'policy-test-results' });

  const changed = () => isNew || pol.ta.value !== pv.policy || tests.ta.value !== pv.tests;
  function showProblems(e) {
    const ps = (e.body && e.body.error && e.body.error.problems) || [];
    pol.setProblems(ps.filter((p) => p.module !== 'tests'));
    tests.setProblems(ps.filter((p) => p.module === 'tests'));
    status.replaceChildren(errorBox(e, 'policy-error'), ...(ps.length ? [h('p', { class: 'hint' }, ps.length + ' problem(s), marked at their lines in the editor above.')] : []));
  }
  function clearProblems() { pol.setProblems([]); tests.setProblems([]); }

  async function validate() {
    status.replaceChildren(h('p', { class: 'muted' }, 'Validating…'));
    try {
      await post('/policies/validate', { policy: pol.ta.value, tests: tests.ta.value });
      clearProblems();
      status.replaceChildren(h('p', { class: 'ok', id: 'policy-valid', testid: 'policy-valid' }, '✓ The policy and its tests compile.'));
      return true;
    } catch (e) {
      showProblems(e);
      return false;
    }
  }
  async function save() {
    try {
      const v = await post('/policies', { policy: pol.ta.value, tests: tests.ta.value, comment: comment.value });
      flashNext('Saved as policy v' + v.version + '.');
      navigate('/policies/' + v.version);
    } catch (e) {
      showProblems(e);
    }
  }
  async function runTests() {
    testOut.replaceChildren(h('p', { class: 'muted' }, 'Running tests…'));
    try {
      const r = await post('/policies/' + fromV + '/test', {});
      tests.setProblems(r.results.filter((t) => !t.passed).map((t) => ({ line: t.line, message: t.name + ' failed' + (t.error ? ': ' + t.error : ''), kind: 'fail' })));
      testOut.replaceChildren(h('section', { class: 'card', id: 'test-report', testid: 'test-report' },
        h('h2', {}, 'Tests of v' + fromV + ': ',
          h('span', { class: r.failed ? 'fail' : 'ok', id: 'test-summary', testid: 'test-summary' }, `${r.passed} passed, ${r.failed} failed`)),
        table('test-results', [
          { label: 'Test', key: 'name', cell: (t) => h('code', {}, t.name) },
          { label: 'Result', key: 'result', cell: (t) => t.passed ? badge('pass', 'active') : badge('fail', 'revoked') },
          { label: 'Line', key: 'line', cell: (t) => t.line || '' },
          { label: 'Time', key: 'time', cell: (t) => (t.duration_ns / 1e6).toFixed(2) + ' ms' },
          { label: 'Error', key: 'error', cell: (t) => t.error || '' },
        ], r.results, 'This version has no tests.')));
    } catch (e) {
      testOut.replaceChildren(errorBox(e, 'test-error'));
    }
  }

  const buttons = h('div', { class: 'row toolbar' },
    writable ? h('button', { type: 'button', id: 'policy-validate', testid: 'policy-validate', class: 'secondary', onclick: validate }, 'Validate') : null,
    writable ? h('button', { type: 'button', id: 'policy-save', testid: 'policy-save', onclick: async () => { if (await validate()) save(); } }, 'Save as new version') : null,
    !isNew && writable ? h('button', { type: 'button', id: 'policy-run-tests', testid: 'policy-run-tests', class: 'secondary', onclick: () => {
      if (changed()) { status.replaceChildren(h('p', { class: 'warn' }, 'Tests run against the saved version v' + fromV + '; save your edits first to test them.')); }
      runTests();
    } }, 'Run tests of v' + fromV) : null,
    !isNew && admin && !pv.active ? h('button', { type: 'button', id: 'policy-activate', testid: 'policy-activate', onclick: () => activate(fromV, active, navigate) },
      active && fromV < active ? 'Roll back to v' + fromV : 'Activate v' + fromV) : null,
    !isNew && active && active !== fromV ? h('a', { class: 'button secondary', href: href('/policies/diff', { from: active, to: fromV }), id: 'policy-diff-active' }, 'Diff vs active v' + active) : null);

  const meta = isNew
    ? h('p', { class: 'hint' }, fromV ? 'Starting from v' + fromV + '. ' : '', 'Saving creates a new immutable version; it takes effect only when an admin activates it.')
    : h('p', { class: 'hint' }, pv.active ? [badge('active'), ' '] : null, 'Created ', fmtTime(pv.created_at), ' by ', pv.created_by || '—',
      pv.comment ? ['. “', pv.comment, '”'] : null, '. Digest ', h('code', {}, pv.digest.slice(0, 16)), '.');

  return h('div', {},
    heading(isNew ? 'New policy version' : 'Policy v' + fromV),
    meta,
    h('div', { class: 'editors' }, pol.el, tests.el),
    writable ? field('Comment for the new version', comment) : null,
    buttons, status, testOut,
    simulator(isNew ? active : fromV, href));
}

function simulator(version, href) {
  const device = h('input', { id: 'sim-device', required: true, testid: 'sim-device', placeholder: 'device id' });
  const action = h('select', { id: 'sim-action', testid: 'sim-action' }, ['publish', 'subscribe', 'connect'].map((a) => h('option', { value: a }, a)));
  const topic = h('input', { id: 'sim-topic', testid: 'sim-topic', placeholder: 'fleets/<fleet>/devices/<id>/telemetry/temp' });
  const qos = h('select', { id: 'sim-qos', testid: 'sim-qos' }, [0, 1, 2].map((q) => h('option', { value: q }, 'QoS ' + q)));
  const retain = h('input', { type: 'checkbox', id: 'sim-retain', testid: 'sim-retain' });
  const out = h('div', { id: 'sim-result-slot', role: 'status' });
  const form = h('form', {
    id: 'sim-form', class: 'card',
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const r = await post('/decisions/simulate', { device: device.value.trim(), action: action.value, topic: topic.value, qos: parseInt(qos.value, 10), retain: retain.checked, version: version || 0 });
        out.replaceChildren(h('div', { class: 'sim-result ' + (r.allow ? 'allow' : 'deny'), id: 'sim-result', testid: 'sim-result', 'data-allow': String(r.allow) },
          h('strong', { id: 'sim-verdict', testid: 'sim-verdict' }, r.allow ? 'ALLOW' : 'DENY'),
          h('span', {}, ' — ', h('span', { id: 'sim-reason', testid: 'sim-reason' }, r.reason)),
          r.rule ? h('span', {}, ' (rule ', h('code', { id: 'sim-rule', testid: 'sim-rule' }, r.rule), ')') : null,
          h('small', { class: 'muted' }, ' policy v' + r.policy_version + ', device ', h('a', { href: href('/devices/' + encodeURIComponent(r.device)) }, r.device))));
      } catch (e) {
        out.replaceChildren(errorBox(e, 'sim-error'));
      }
    },
  }, h('h2', {}, 'Decision simulator', version ? ' (v' + version + ')' : ''),
  h('p', { class: 'hint' }, 'Asks what this policy version would decide for a known device, without touching any broker.'),
  h('div', { class: 'grid4' }, field('Device', device), field('Action', action), field('Topic or filter', topic),
    h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Delivery'), h('div', { class: 'row' }, qos, h('label', { class: 'check', for: 'sim-retain' }, retain, ' retain')))),
  h('button', { type: 'submit', id: 'sim-submit', testid: 'sim-submit' }, 'Simulate'), out);
  return form;
}
