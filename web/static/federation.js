/* Federation page: one uPlot per round-level metric (x = round id). */
(function () {
  'use strict';
  const root = document.getElementById('metrics');
  if (!root) return;
  const COLORS = ['#2471a3', '#c0392b', '#16a085', '#d35400', '#7d3c98', '#2e4053'];
  fetch(root.dataset.src, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
    .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
    .then((m) => {
      root.textContent = '';
      const names = Object.keys(m.series || {});
      if (!m.rounds.length || !names.length) {
        message('muted', 'No metrics recorded yet.');
        return;
      }
      names.forEach((name, i) => {
        const box = document.createElement('div');
        box.className = 'metric';
        const h = document.createElement('h3');
        h.textContent = name;
        const plot = document.createElement('div');
        plot.className = 'plot';
        plot.dataset.metric = name;
        box.appendChild(h);
        box.appendChild(plot);
        root.appendChild(box);
        const u = MedChain.makeChart(plot, [{ label: name, color: COLORS[i % COLORS.length] }], { time: false, height: 160, points: true, integerX: true });
        u.setData([m.rounds, m.series[name]]);
      });
    })
    .catch((e) => { root.textContent = ''; message('error-message', 'Metrics unavailable: ' + e.message); });
  function message(cls, text) {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    root.appendChild(p);
  }
})();
