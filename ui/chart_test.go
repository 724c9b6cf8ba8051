package ui

import "testing"

// chart.js builds SVG the way dom.js builds HTML: no link or handler
// attribute survives, text is text, one bar per bucket with its values in
// data attributes, and the axis tops are round numbers.
func TestChartModule(t *testing.T) {
	dir := nodeDir(t, "dom.js", "chart.js")
	runNode(t, dir, `
class El { constructor(t, ns) { this.tag = t; this.ns = ns; this.attrs = {}; this.dataset = {}; this.children = []; this.listeners = {}; }
  setAttribute(k, v) { this.attrs[k] = v; } addEventListener(k, f) { this.listeners[k] = f; } append(...c) { this.children.push(...c); } }
globalThis.Node = El;
globalThis.document = { createElement: (t) => new El(t), createElementNS: (ns, t) => new El(t, ns) };
const { s, stackedBars, reasonBars, niceMax } = await import('./chart.js');
const bad = [];
const el = s('a', { href: '#/x', 'xlink:href': 'javascript:alert(1)', onclick: 'alert(1)', onload: () => {}, x: 1 }, '<b>t</b>');
if ('href' in el.attrs || 'xlink:href' in el.attrs || 'onclick' in el.attrs || 'onload' in el.attrs || Object.keys(el.listeners).length) bad.push('kept ' + JSON.stringify(el.attrs));
if (el.attrs.x !== '1' || el.children[0] !== '<b>t</b>' || el.ns !== 'http://www.w3.org/2000/svg') bad.push('svg element ' + JSON.stringify(el));
for (const [n, want] of [[0, 1], [-3, 1], [NaN, 1], [1, 1], [3, 5], [7, 10], [10, 10], [11, 20], [150, 200], [4001, 5000]]) {
  if (niceMax(n) !== want) bad.push('niceMax(' + n + ') = ' + niceMax(n) + ', want ' + want);
}
const walk = (e, f) => { f(e); for (const c of e.children || []) if (c instanceof El) walk(c, f); };
const find = (root, pred) => { const out = []; walk(root, (e) => { if (pred(e)) out.push(e); }); return out; };
const buckets = Array.from({ length: 60 }, (_, i) => ({ start: new Date(Date.UTC(2026, 0, 1, 12, i)).toISOString(), allow: i === 59 ? 4 : 0, deny: i === 59 ? 2 : 0, error: 0 }));
const series = [{ key: 'allow', label: 'Allow', cls: 'allow' }, { key: 'deny', label: 'Deny', cls: 'deny' }, { key: 'error', label: 'Error', cls: 'error' }];
const fig = stackedBars({ id: 'c', title: 'T', buckets, series, labelEvery: 10 });
const bars = find(fig, (e) => e.tag === 'g' && e.attrs.class === 'bucket');
if (bars.length !== 60) bad.push(bars.length + ' bars');
const last = bars[59];
if (last.attrs['data-allow'] !== '4' || last.attrs['data-deny'] !== '2' || last.attrs['data-error'] !== '0') bad.push('last bar ' + JSON.stringify(last.attrs));
const rects = find(last, (e) => e.tag === 'rect');
if (rects.length !== 2 || rects[0].attrs.class !== 'fill-allow' || rects[1].attrs.class !== 'fill-deny') bad.push('last bar rects ' + JSON.stringify(rects.map((r) => r.attrs)));
if (find(bars[0], (e) => e.tag === 'rect').length !== 0) bad.push('an empty bucket drew a rect');
const svg = find(fig, (e) => e.tag === 'svg')[0];
if (svg.attrs['data-max'] !== '10') bad.push('axis top ' + svg.attrs['data-max']);
const title = find(last, (e) => e.tag === 'title')[0];
if (title.children[0] !== '12:59 UTC: allow 4, deny 2, error 0') bad.push('title ' + title.children[0]);
const rb = reasonBars({ id: 'r', title: 'R', rows: [{ reason: '<img src=x onerror=alert(1)>', count: 3 }, { reason: 'stale', count: 1 }], cls: 'deny' });
const rows = find(rb, (e) => e.attrs.class === 'reason-bar');
if (rows.length !== 2 || rows[0].attrs['data-count'] !== '3' || !find(rows[0], (e) => e.tag === 'text').some((t) => t.children[0] === '<img src=x onerror=alert(1)>')) bad.push('reason bars ' + JSON.stringify(rows.map((r) => r.attrs)));
console.log(bad.length ? 'FAIL ' + bad.join('; ') : 'OK');
`)
}
