import { getOptional } from '../api.js';
import { h, fmtTime, heading, errorBox } from '../dom.js';
import { genericList } from './device.js';

// Several of these endpoints come from other parts of the server; each
// section says so plainly when its endpoint is absent instead of failing.
async function section(id, title, path, draw) {
  let body;
  try {
    const r = await getOptional(path);
    body = r ? draw(r) : h('p', { class: 'muted', testid: id + '-unavailable' }, 'Not available on this server (', h('code', {}, 'GET /api/v1' + path), ').');
  } catch (e) {
    body = errorBox(e, id + '-error');
  }
  return h('section', { class: 'card', id, testid: id }, h('h2', {}, title), body);
}

function props(obj) {
  return h('dl', { class: 'props' }, Object.entries(obj).filter(([, v]) => typeof v !== 'object' || v === null).flatMap(([k, v]) => [
    h('dt', {}, k.replaceAll('_', ' ')),
    h('dd', { 'data-key': k, testid: 'crl-' + k }, show(k, v))]));
}

function show(k, v) {
  if (v === null || v === '') return '—';
  if (k === 'reload_command') return v ? 'configured' : 'not configured';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'string' && /(_at|_update|^at)$/.test(k)) return fmtTime(v);
  return String(v);
}

// kicks shows the kick targets' state (a wrong management password is an
// error here at start, before any revocation) above the kicks themselves.
function kicks(r) {
  const targets = r.targets || [];
  const broken = targets.filter((t) => t.status === 'error');
  return h('div', {},
    broken.map((t) => h('p', { class: 'error', testid: 'kick-target-error' }, 'Kick target ', h('strong', {}, t.broker), ' fails its check; kicks to it will fail: ', t.error)),
    targets.length ? h('div', {}, h('h3', {}, 'Targets'), genericList('kick-targets-table', targets)) : null,
    h('h3', {}, 'Kicks'),
    genericList('kicks-table', r.kicks || []));
}

export async function render() {
  const ocspURL = location.origin + '/ocsp';
  const sections = await Promise.all([
    section('crl-status', 'Certificate revocation list', '/crl', (r) => h('div', {}, props(r),
      h('p', {}, 'Download: ', h('a', { href: '/crl.pem', download: 'crl.pem', testid: 'crl-pem' }, 'crl.pem'), ' · ', h('a', { href: '/crl', download: 'crl.der', testid: 'crl-der' }, 'DER')),
      Object.entries(r).filter(([, v]) => v && typeof v === 'object' && !Array.isArray(v)).map(([k, v]) => h('div', {}, h('h3', {}, k.replaceAll('_', ' ')), props(v))))),
    Promise.resolve(h('section', { class: 'card', id: 'ocsp-info', testid: 'ocsp-info' }, h('h2', {}, 'OCSP'),
      h('p', {}, 'Responder URL (also in every device certificate’s Authority Information Access): ', h('code', { id: 'ocsp-url' }, ocspURL)),
      h('p', { class: 'hint' }, 'Answers GET and POST requests per RFC 6960 from the same revocation data as the CRL.'))),
    section('session-kicks', 'Broker session kicks', '/session-kicks', kicks),
    section('revocation-jobs', 'Revocation jobs', '/revocation-jobs?limit=50', (r) => genericList('jobs-table', r)),
  ]);
  return h('div', {}, heading('Revocations'), h('div', { class: 'grid' }, sections[0], sections[1]), sections[2], sections[3]);
}
