/* Federation page: the charts /api/federation/metrics lists, drawn where their group belongs
   (model quality first, then every class, then how the rounds ran, then unnamed keys).
   x = round id; values are shown in each chart's unit (scale × stored value); a round without
   a value is a gap. window.medchainFederation describes what was drawn (for tests). */
(function () {
  'use strict';
  const root = document.getElementById('quality-charts');
  if (!root) return;
  const targets = {
    quality: root,
    quality_detail: document.getElementById('quality-detail'),
    plumbing: document.getElementById('plumbing-charts'),
    other: document.getElementById('other-charts'),
  };
  const EMPTY = {
    quality: 'No model quality recorded yet: a round scores its model on the aggregator\'s validation set (--validation) and on the devices\' labelled beats.',
    plumbing: 'No round has closed yet.',
  };
  const state = { ready: false, charts: [] };
  window.medchainFederation = state;

  fetch(root.dataset.src, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
    .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
    .then((m) => {
      Object.values(targets).forEach((el) => { if (el) el.textContent = ''; });
      const drawn = {};
      (m.charts || []).forEach((chart) => {
        const el = targets[chart.group];
        if (!el || !m.rounds.length) return;
        draw(el, chart, m);
        drawn[chart.group] = true;
      });
      Object.keys(EMPTY).forEach((g) => { if (!drawn[g]) message(targets[g], 'muted', EMPTY[g]); });
      const box = document.getElementById('quality-detail-box');
      if (box && !drawn.quality_detail) box.hidden = true;
      state.ready = true;
    })
    .catch((e) => {
      root.textContent = '';
      message(root, 'error-message', 'Metrics unavailable: ' + e.message);
      state.error = e.message;
    });

  function draw(el, chart, m) {
    const box = document.createElement('div');
    box.className = 'metric';
    const h = document.createElement('h3');
    h.textContent = chart.title + (chart.unit ? ' (' + chart.unit + ')' : '');
    box.appendChild(h);
    if (chart.note) message(box, 'muted small', chart.note);
    const plot = document.createElement('div');
    plot.className = 'plot';
    plot.dataset.chart = chart.id;
    box.appendChild(plot);
    el.appendChild(box);
    const fmt = (v) => (v == null ? '–' : v.toFixed(chart.decimals) + (chart.unit ? ' ' + chart.unit : ''));
    const series = chart.series.map((s) => ({ label: s.label, color: s.color, dashed: s.dashed }));
    const u = MedChain.makeChart(plot, series, {
      time: false, height: 180, points: true, integerX: true, integerY: chart.decimals === 0, legend: true, xLabel: 'Round', format: fmt,
    });
    const data = chart.series.map((s) => (m.series[s.key] || []).map((v) => (v == null ? null : v * chart.scale)));
    u.setData([m.rounds].concat(data));
    state.charts.push({ id: chart.id, group: chart.group, title: h.textContent, labels: chart.series.map((s) => s.label), data: data });
  }

  function message(el, cls, text) {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    el.appendChild(p);
  }

})();
