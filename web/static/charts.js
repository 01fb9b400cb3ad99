/* MedChain shared chart helpers: a typed-array ring buffer and uPlot wrappers.
   uPlot needs explicit sizes, so every chart follows its container with a ResizeObserver. */
(function (global) {
  'use strict';

  class Ring {
    /* The last `capacity` samples of `nch` channels with their times (s since the epoch). */
    constructor(capacity, nch) {
      this.cap = Math.max(1, capacity | 0);
      this.nch = nch;
      this.t = new Float64Array(this.cap);
      this.v = [];
      for (let c = 0; c < nch; c++) this.v.push(new Float64Array(this.cap));
      this.head = 0;
      this.count = 0;
      this.lastT = -Infinity;
      this.total = 0;
    }
    _put(t, data, i) {
      if (!(t > this.lastT)) return; /* duplicates (snapshot overlap, redelivery) */
      this.t[this.head] = t;
      for (let c = 0; c < this.nch; c++) this.v[c][this.head] = data[c][i];
      this.head = (this.head + 1) % this.cap;
      if (this.count < this.cap) this.count++;
      this.lastT = t;
      this.total++;
    }
    push(t0, fs, data) {
      const n = data[0].length;
      for (let i = 0; i < n; i++) this._put(t0 + i / fs, data, i);
    }
    pushTimes(times, data) {
      for (let i = 0; i < times.length; i++) this._put(times[i], data, i);
    }
    arrays(windowS) {
      /* Oldest-first copies: [t, ch0, ch1, ...] as uPlot expects, limited to the last
         `windowS` seconds so that samples from before a pause in the stream are not drawn. */
      const start = (this.head - this.count + this.cap) % this.cap;
      const order = (arr) => {
        const out = new Float64Array(this.count);
        const first = Math.min(this.count, this.cap - start);
        out.set(arr.subarray(start, start + first), 0);
        if (first < this.count) out.set(arr.subarray(0, this.count - first), first);
        return out;
      };
      const all = [order(this.t)].concat(this.v.map(order));
      if (!windowS || !this.count) return all;
      const minT = this.lastT - windowS;
      let i = 0;
      while (i < this.count && all[0][i] < minT) i++;
      return i ? all.map((a) => a.subarray(i)) : all;
    }
  }

  function clock(s) {
    /* Axis label of a time in s since the epoch: local hh:mm:ss. */
    const d = new Date(s * 1000);
    const pad = (n) => String(n).padStart(2, '0');
    const tenths = Math.floor((s * 10) % 10);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + (tenths ? '.' + tenths : '');
  }

  function makeChart(el, series, opts) {
    /* series: [{label, color, dashed? (dashed line, filled points)}]; opts: {height, time (false: numeric x), integerX, integerY,
       points, xLabel, legend (default: when more than one series), format (y value -> text, for the
       axis and the legend)}. Null values are gaps (uPlot does not span them). */
    opts = opts || {};
    const height = opts.height || 200;
    const width = () => Math.max(200, Math.floor(el.clientWidth));
    const INTEGER_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];
    const yAxis = { stroke: '#666', grid: { stroke: '#eee' }, size: opts.format ? 70 : 55 };
    if (opts.integerY) yAxis.incrs = INTEGER_INCRS;
    if (opts.format) yAxis.values = (u, splits) => splits.map(opts.format);
    const line = (s) => {
      const out = { label: s.label, stroke: s.color, width: s.dashed ? 1.75 : 1.25, points: { show: !!opts.points } };
      if (s.dashed) { out.dash = [6, 4]; out.points.fill = s.color; } /* and filled points */
      if (opts.format) out.value = (u, v) => opts.format(v);
      return out;
    };
    const u = new uPlot({
      width: width(),
      height: height,
      legend: { show: opts.legend !== undefined ? !!opts.legend : series.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: opts.time !== false } },
      axes: [
        opts.time !== false
          ? { stroke: '#666', grid: { stroke: '#eee' }, space: 90, values: (u, splits) => splits.map(clock) }
          : opts.integerX
            ? { stroke: '#666', grid: { stroke: '#eee' }, incrs: INTEGER_INCRS }
            : { stroke: '#666', grid: { stroke: '#eee' } },
        yAxis,
      ],
      series: [opts.xLabel ? { label: opts.xLabel } : {}].concat(series.map(line)),
    }, [[]].concat(series.map(() => [])), el);
    let lastW = width();
    if (global.ResizeObserver) {
      new ResizeObserver(() => {
        const w = width();
        if (w !== lastW) { lastW = w; u.setSize({ width: w, height: height }); }
      }).observe(el);
    }
    return u;
  }

  function snippetChart(el, snippet) {
    const u = makeChart(el, [{ label: 'ECG (µV)', color: '#c0392b' }], { time: false, height: 120 });
    u.setData([snippet.t, snippet.v]);
    return u;
  }

  function formatTimes(root) {
    root.querySelectorAll('time.ts').forEach((el) => {
      let ms = NaN;
      if (el.dataset.tNs) ms = Number(BigInt(el.dataset.tNs) / 1000000n);
      else if (el.dataset.tS) ms = parseFloat(el.dataset.tS) * 1000;
      if (!isNaN(ms)) el.textContent = new Date(ms).toLocaleString();
    });
  }

  function csrf() {
    const m = document.querySelector('meta[name=csrf-token]');
    return m ? m.content : '';
  }

  global.MedChain = { Ring: Ring, makeChart: makeChart, snippetChart: snippetChart, formatTimes: formatTimes, csrf: csrf };
  document.addEventListener('DOMContentLoaded', () => formatTimes(document));
})(window);
