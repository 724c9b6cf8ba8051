// Gatehouse operator UI: a hash-routed single-page app in plain ES modules.
// Routes look like #/devices?fleet=x&status=active&q=abc; each page is one
// module under pages/ exporting render(ctx) that returns an element.

import { api, ApiError, setCsrfToken } from './api.js';
import { h, errorBox, flash, flashNext, navigated } from './dom.js';

const ROUTES = [
  { re: /^\/$/, page: 'dashboard', nav: 'dashboard' },
  { re: /^\/login$/, page: 'login', public: true },
  { re: /^\/fleets$/, page: 'fleets', nav: 'fleets' },
  { re: /^\/fleets\/(?<fleet>[^/]+)\/vendors$/, page: 'vendors', nav: 'fleets' },
  { re: /^\/profiles$/, page: 'profiles', nav: 'profiles' },
  { re: /^\/devices$/, page: 'devices', nav: 'devices' },
  { re: /^\/devices\/(?<id>[^/]+)$/, page: 'device', nav: 'devices' },
  { re: /^\/batches$/, page: 'batches', nav: 'batches' },
  { re: /^\/policies$/, page: 'policies', nav: 'policies' },
  { re: /^\/policies\/diff$/, page: 'policydiff', nav: 'policies' },
  { re: /^\/policies\/(?<version>new|\d+)$/, page: 'policy', nav: 'policies' },
  { re: /^\/revocations$/, page: 'revocations', nav: 'revocations' },
  { re: /^\/audit$/, page: 'audit', nav: 'audit' },
  { re: /^\/users$/, page: 'users', nav: 'users' },
  { re: /^\/account$/, page: 'account' },
];

const RANK = { viewer: 1, operator: 2, admin: 3 };

/** The signed-in user, or null. */
export const session = { user: null };

/** Whether the signed-in user has at least role. */
export function can(role) {
  return !!session.user && (RANK[session.user.role] || 0) >= RANK[role];
}

/** Build a route hash from a path and query parameters (empty ones dropped). */
export function href(path, query = {}) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return '#' + path + (s ? '?' + s : '');
}

/** Go to a route. */
export function navigate(path, query) {
  const target = href(path, query);
  if (location.hash === target) route();
  else location.hash = target;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q = ''] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(q) };
}

function setSession(s) {
  session.user = s ? s.user : null;
  setCsrfToken(s ? s.csrf_token : '');
  const signedIn = !!session.user;
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('session').hidden = !signedIn;
  document.body.dataset.role = signedIn ? session.user.role : '';
  if (signedIn) {
    document.getElementById('current-user').textContent = session.user.username;
    document.getElementById('current-role').textContent = session.user.role;
  }
  // Links to pages a role cannot use are hidden; the server still decides.
  for (const a of document.querySelectorAll('#nav a[data-min-role]')) a.hidden = !can(a.dataset.minRole);
}

/** Called by the login page after POST /session succeeded. */
export function signedIn(s) {
  setSession(s);
  const next = sessionStorage.getItem('gatehouse.next') || '/';
  sessionStorage.removeItem('gatehouse.next');
  navigate(next);
}

let renderSeq = 0;

async function route() {
  const seq = ++renderSeq;
  navigated();
  const { path, query } = parseHash();
  const main = document.getElementById('main');
  let match = null;
  let params = {};
  for (const r of ROUTES) {
    const m = path.match(r.re);
    if (m) { match = r; params = Object.fromEntries(Object.entries(m.groups || {}).map(([k, v]) => [k, decodeURIComponent(v)])); break; }
  }
  if (!match) {
    main.replaceChildren(h('h1', { id: 'page-title' }, 'Not found'), h('p', {}, 'No page at ', h('code', {}, path), '. ', h('a', { href: '#/' }, 'Go to the dashboard')));
    return;
  }
  if (!match.public && !session.user) {
    sessionStorage.setItem('gatehouse.next', path + (query.toString() ? '?' + query : ''));
    location.hash = '#/login';
    return;
  }
  if (match.page === 'login' && session.user) { navigate('/'); return; }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === match.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.setAttribute('aria-busy', 'true');
  main.dataset.page = match.page;
  try {
    const mod = await import('./pages/' + match.page + '.js');
    const el = await mod.render({ params, query, session, can, navigate, href });
    if (seq !== renderSeq) return; // a newer navigation won
    main.replaceChildren(el);
    document.title = (main.querySelector('h1')?.textContent || 'Gatehouse') + ' · Gatehouse';
  } catch (e) {
    if (seq !== renderSeq) return;
    if (e instanceof ApiError && e.status === 401) return; // the session handler redirects
    main.replaceChildren(h('h1', { id: 'page-title' }, 'Something went wrong'), errorBox(e));
  } finally {
    if (seq === renderSeq) {
      main.removeAttribute('aria-busy');
      main.dataset.ready = String(seq);
    }
  }
}

async function logout() {
  try {
    await api('DELETE', '/session');
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) { flash('Logout failed: ' + e.message, 'error'); return; }
  }
  setSession(null);
  navigate('/login');
}

window.addEventListener('gatehouse:unauthenticated', () => {
  if (!session.user) return;
  setSession(null);
  flashNext('Your session has ended; sign in again.', 'error');
  navigate('/login');
});

async function start() {
  document.getElementById('logout').addEventListener('click', logout);
  try {
    setSession(await api('GET', '/session'));
  } catch {
    setSession(null);
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
