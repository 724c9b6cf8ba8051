// Inline SVG charts for the dashboard: no chart library, nothing fetched.
// Elements are built with createElementNS and text nodes like dom.js's h(),
// never markup; colours come from classes in app.css, since the CSP allows
// no style attribute.

import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

/** s('tag', {attrs}, ...children): build an SVG element. Link and handler attributes are dropped. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false || k.startsWith('on') || k.endsWith('href')) continue;
    el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const W = 640;
const PAD = { left: 46, right: 12, top: 12, bottom: 30 };

/** The smallest 1, 2 or 5 times a power of ten at or above n (at least 1). */
export function niceMax(n) {
  if (!(n > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/** HH:MM in UTC, as the rest of the UI shows times. */
function hhmm(iso) {
  return new Date(iso).toISOString().slice(11, 16);
}

function legend(id, series) {
  return h('ul', { class: 'legend', id: id + '-legend', testid: id + '-legend' },
    series.map((k) => h('li', {}, h('span', { class: 'swatch fill-' + k.cls, 'aria-hidden': 'true' }), k.label)));
}

/**
 * A stacked bar chart, one bar per bucket (empty buckets are bars of
 * height 0), with a y axis, time labels every labelEvery buckets and a
 * legend. series: [{key, label, cls}], bottom first. Each bar is a <g
 * class="bucket"> whose data attributes and <title> give its values.
 */
export function stackedBars({ id, title, buckets, series, labelEvery, height = 200 }) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const total = (b) => series.reduce((n, k) => n + b[k.key], 0);
  const top = niceMax(Math.max(0, ...buckets.map(total)));
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const slot = plotW / buckets.length;
  const barW = Math.max(1, slot * 0.75);
  // Counts are whole: a half-way line only where it is a whole number.
  const ticks = top % 2 === 0 ? [0, top / 2, top] : [0, top];
  const grid = ticks.map((v) => s('g', { class: 'tick' },
    s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'gridline' }),
    s('text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis-label' }, v)));
  const bars = buckets.map((b, i) => {
    const x = PAD.left + i * slot + (slot - barW) / 2;
    let base = 0;
    const rects = series.map((k) => {
      const v = b[k.key];
      const r = v > 0 ? s('rect', { x: x.toFixed(2), y: y(base + v).toFixed(2), width: barW.toFixed(2), height: (y(base) - y(base + v)).toFixed(2), class: 'fill-' + k.cls }) : null;
      base += v;
      return r;
    });
    const data = Object.fromEntries(series.map((k) => ['data-' + k.key.replace(/_/g, '-'), b[k.key]]));
    return s('g', { class: 'bucket', 'data-index': i, 'data-start': b.start, ...data },
      s('title', {}, hhmm(b.start) + ' UTC: ' + series.map((k) => k.label.toLowerCase() + ' ' + b[k.key]).join(', ')), rects);
  });
  const labels = buckets.map((b, i) => (i % labelEvery === 0 || i === buckets.length - 1)
    ? s('text', { x: (PAD.left + (i + 0.5) * slot).toFixed(2), y: height - 10, 'text-anchor': 'middle', class: 'axis-label' }, hhmm(b.start))
    : null);
  const svg = s('svg', { class: 'chart', id, 'data-testid': id, viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-labelledby': id + '-title', 'data-max': top },
    s('title', { id: id + '-title' }, title),
    grid,
    s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(0), y2: y(0), class: 'axis' }),
    bars, labels);
  return h('figure', { class: 'chart-figure' }, svg, legend(id, series));
}

/**
 * Horizontal bars, one per row ({reason, count}), longest first as given,
 * each a <g class="reason-bar"> with its label and count.
 */
export function reasonBars({ id, title, rows, cls }) {
  const rowH = 26;
  const labelW = 170;
  const height = Math.max(1, rows.length) * rowH + 8;
  const top = Math.max(1, ...rows.map((r) => r.count));
  const barMax = W - labelW - 60;
  const bars = rows.map((r, i) => {
    const yy = 4 + i * rowH;
    const w = Math.max(2, (r.count / top) * barMax);
    return s('g', { class: 'reason-bar', 'data-reason': r.reason, 'data-count': r.count },
      s('title', {}, r.reason + ': ' + r.count),
      s('text', { x: labelW - 8, y: yy + rowH / 2 + 4, 'text-anchor': 'end', class: 'bar-label' }, r.reason),
      s('rect', { x: labelW, y: yy + 3, width: w.toFixed(2), height: rowH - 8, class: 'fill-' + cls }),
      s('text', { x: labelW + w + 6, y: yy + rowH / 2 + 4, class: 'bar-label' }, r.count));
  });
  return s('svg', { class: 'chart', id, 'data-testid': id, viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-labelledby': id + '-title' },
    s('title', { id: id + '-title' }, title), bars);
}
