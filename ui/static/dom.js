// DOM helpers. Everything is built with createElement and text nodes, never
// innerHTML, so API data (device ids, labels, audit details) cannot inject
// markup.

// Attributes that take a URL accept only same-origin ones: a route hash, a
// path on this server (not "//host"), or a blob the page made. A device id
// or label that says "javascript:..." can never become a link that runs.
// Event handlers are only ever functions: a string "on..." attribute would be
// inline script.
const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'xlink:href']);
const SAFE_URL = /^(#|\/(?![\/\\])|blob:)/;

/** h('tag', {attrs}, ...children): build an element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) { if (typeof v === 'function') el.addEventListener(k.slice(2), v); }
    else if (URL_ATTRS.has(k) && !SAFE_URL.test(String(v))) continue; // dropped, not rendered
    else if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

/** Format an RFC 3339 time for people, in UTC so operators compare easily. */
export function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** A relative "in 3 d" / "2 h ago" label. */
export function fmtRelative(s) {
  const ms = new Date(s) - Date.now();
  const abs = Math.abs(ms);
  const units = [['d', 86400e3], ['h', 3600e3], ['min', 60e3], ['s', 1e3]];
  for (const [u, n] of units) {
    if (abs >= n || u === 's') {
      const v = Math.round(abs / n);
      return ms >= 0 ? `in ${v} ${u}` : `${v} ${u} ago`;
    }
  }
  return '';
}

/** A status badge. */
export function badge(text, kind) {
  return h('span', { class: 'badge badge-' + (kind || text), testid: 'badge' }, text);
}

/** A table from column definitions [{label, cell(row)}] and rows. */
export function table(id, columns, rows, empty = 'Nothing here yet.') {
  const body = rows.length
    ? rows.map((r, i) => h('tr', { 'data-row': i }, columns.map((c) => h('td', { 'data-col': c.key || c.label }, c.cell(r)))))
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'muted empty' }, empty))];
  return h('table', { id, testid: id },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
    h('tbody', {}, body));
}

/** An error box for an ApiError or any Error. */
export function errorBox(err, id = 'page-error') {
  const code = err && err.code ? err.code : 'error';
  return h('div', { class: 'error', role: 'alert', id, testid: 'error', 'data-code': code },
    h('strong', {}, code), ': ', err && err.message ? err.message : String(err));
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input,
    hint ? h('small', { class: 'hint' }, hint) : null);
}

/** A page heading with optional actions on the right. */
export function heading(text, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, text), h('div', { class: 'actions' }, actions));
}

/**
 * Ask for confirmation in a modal <dialog>. body is extra content (e.g. a
 * reason select). Resolves true when confirmed.
 */
export function confirmDialog({ id, title, body, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { id, testid: id, 'aria-labelledby': id + '-title' });
    const form = h('form', { method: 'dialog' },
      h('h2', { id: id + '-title' }, title),
      body,
      h('div', { class: 'dialog-actions' },
        h('button', { type: 'button', class: 'secondary', id: id + '-cancel', testid: id + '-cancel', onclick: () => dlg.close('cancel') }, 'Cancel'),
        h('button', { type: 'submit', class: danger ? 'danger' : '', id: id + '-confirm', testid: id + '-confirm', value: 'ok' }, confirmLabel)));
    dlg.append(form);
    dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue === 'ok'); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Show a short message in the flash area of this page; testid names it for tests. */
export function flash(text, kind = 'ok', testid) {
  const el = document.getElementById('flash');
  el.replaceChildren(h('p', { class: 'flash flash-' + kind, testid: testid || 'flash-' + kind }, text));
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => el.replaceChildren(), 8000);
}

let handedOver = null;

/**
 * Show a message on the page the app goes to next: for an action that ends
 * by navigating (saved, back to the list), the message belongs to the page
 * it lands on.
 */
export function flashNext(text, kind = 'ok', testid) {
  handedOver = [text, kind, testid];
}

/**
 * Called on every navigation. A flash belongs to the page that showed it,
 * so it goes, however soon the user moves on, unless flashNext handed one
 * to the page being entered.
 */
export function navigated() {
  clearTimeout(flash.timer);
  document.getElementById('flash').replaceChildren();
  if (handedOver) {
    const [text, kind, testid] = handedOver;
    handedOver = null;
    flash(text, kind, testid);
  }
}
