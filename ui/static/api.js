// A small fetch wrapper for the Gatehouse REST API: same-origin cookies,
// the CSRF token on every unsafe method, and API errors as ApiError values.

let csrfToken = '';

/** Remember the CSRF token the session endpoint handed out. */
export function setCsrfToken(t) { csrfToken = t || ''; }

/** An error answer of the API: {"error":{"code","message"}}. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Call the API. path is relative to /api/v1. A 401 on anything but the
 * session endpoint announces an expired session to the app.
 */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (!SAFE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch('/api/v1' + path, init);
  } catch (e) {
    throw new ApiError(0, 'unavailable', 'The server cannot be reached: ' + e.message, null);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || 'http_' + res.status,
      err.message || res.statusText || 'request failed', data);
    if (res.status === 401 && path !== '/session') {
      window.dispatchEvent(new CustomEvent('gatehouse:unauthenticated'));
    }
    throw e;
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b = {}) => api('POST', p, b);
export const put = (p, b) => api('PUT', p, b);
export const patch = (p, b) => api('PATCH', p, b);
export const del = (p) => api('DELETE', p);

/**
 * GET an endpoint another part of the server may not have yet: resolves to
 * null on 404 (or 405), so pages can say "not available" instead of failing.
 */
export async function getOptional(p) {
  try {
    return await get(p);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
    throw e;
  }
}

/** Build a query string from an object, leaving out empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  }
  const s = u.toString();
  return s ? '?' + s : '';
}
