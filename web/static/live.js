/* Patient page: live signals over server-sent events, drawn with uPlot.
   Messages only fill typed-array rings; drawing happens once per animation frame for the
   charts that changed, and not at all while the page is hidden (phone battery). After 30 s
   hidden the stream is closed, and reopened (with a fresh snapshot) when the page is shown. */
(function () {
  'use strict';
  const root = document.getElementById('patient');
  if (!root) return;
  const WINDOW_S = parseFloat(root.dataset.window) || 10;
  const COLORS = { ecg: ['#c0392b'], ppg: ['#2471a3'], acc: ['#16a085', '#d35400', '#7d3c98'], hr: ['#2e4053'] };
  const NAMES = { ecg: ['ECG'], ppg: ['PPG'], acc: ['x', 'y', 'z'], hr: ['HR'] };
  const MAX_ITEMS = 12;
  const charts = {};
  const items = new Map();
  const stats = { messages: 0, renders: 0, points: {}, received: {}, lastPred: null, status: null, dropped: 0, connected: false };
  window.medchainLive = stats;
  const $ = (id) => document.getElementById(id);

  function chartFor(kind, fs, nch) {
    let c = charts[kind];
    if (c && c.fs === fs && c.nch === nch) return c;
    const el = $('plot-' + kind);
    if (!el) return null;
    $('card-' + kind).classList.remove('hidden');
    if (c) { c.plot.destroy(); }
    const series = [];
    for (let i = 0; i < nch; i++) {
      const colors = COLORS[kind] || ['#333'];
      series.push({ label: (NAMES[kind] || [])[i] || kind + i, color: colors[i % colors.length] });
    }
    const plot = MedChain.makeChart(el, series, { height: kind === 'ecg' ? 220 : 160 });
    c = charts[kind] = { kind: kind, ring: new MedChain.Ring(Math.ceil(WINDOW_S * fs), nch), plot: plot, el: el, fs: fs, nch: nch, dirty: false };
    return c;
  }

  function onLive(m) {
    const c = chartFor(m.stream, m.fs, m.data.length);
    if (!c) return;
    c.ring.push(m.t0, m.fs, m.data);
    c.dirty = true;
    stats.received[m.stream] = c.ring.total;
  }

  function pct(x) { return Math.round(100 * x) + ' %'; }

  function onSummary(p) {
    if ('heart_rate_bpm' in p) $('hr').textContent = p.heart_rate_bpm == null ? '–' : Math.round(p.heart_rate_bpm);
    if (p.latest_beat) {
      const b = p.latest_beat;
      stats.lastPred = b;
      const cls = $('beat-class');
      cls.textContent = b.label;
      cls.className = 'tile-value beat-' + (b.label === 'N' ? 'normal' : 'abnormal');
      $('beat-prob').textContent = b.probs && b.label in b.probs ? pct(b.probs[b.label]) : '';
    }
    if ('rhythm' in p) {
      const r = p.rhythm;
      $('rhythm').textContent = !r ? 'no rhythm event'
        : r.active ? r.label : r.label + ' (ended ' + new Date(r.t_end_ns / 1e6).toLocaleTimeString() + ')';
    }
  }

  // The edge agent's status detail is either free text or a JSON object of readings
  // ({ecg_hr_bpm, beats, backlog, rejected, ppg_hr_bpm, activity, s_in_af_as_n}); show readings in words.
  function describeDetail(detail) {
    let d;
    try { d = JSON.parse(detail); } catch (e) { return detail; }
    if (d === null || typeof d !== 'object') return String(detail);
    const out = [];
    if (d.ecg_hr_bpm != null) out.push('ECG HR ' + Math.round(d.ecg_hr_bpm) + ' bpm');
    if (d.ppg_hr_bpm != null) out.push('PPG HR ' + Math.round(d.ppg_hr_bpm) + ' bpm');
    if (d.activity != null) out.push('activity ' + d.activity);
    if (d.beats != null) out.push(d.beats + ' beats');
    if (d.backlog) out.push(d.backlog + ' waiting to send');
    if (d.rejected) out.push(d.rejected + ' not sent: malformed (see the device log)');
    if (d.s_in_af_as_n) out.push('S calls inside AF reported as N');
    return out.length ? out.join(', ') : detail;
  }

  function onStatus(s) {
    stats.status = s;
    const badge = $('device-status');
    badge.textContent = 'device: ' + (s.online ? 'online' : 'offline');
    badge.className = 'badge ' + (s.online ? 'online' : 'offline');
    const parts = [];
    if (s.model_version) parts.push('model ' + s.model_version);
    if (s.battery_pct != null) parts.push('battery ' + Math.round(s.battery_pct) + ' %');
    if (s.detail) parts.push(describeDetail(s.detail));
    parts.push('seen ' + new Date(s.t_ns / 1e6).toLocaleTimeString());
    $('device-detail').textContent = parts.join(' · ');
  }

  function onFlagged(item) {
    const old = items.get(item.item_id);
    if (old && old.snippet && !item.snippet) return;
    items.set(item.item_id, item);
    renderItems();
  }

  function renderItems() {
    const list = $('events');
    const sorted = Array.from(items.values()).sort((a, b) => (a.t_ns < b.t_ns ? 1 : -1)).slice(0, MAX_ITEMS);
    for (const key of Array.from(items.keys())) if (!sorted.some((i) => i.item_id === key)) items.delete(key);
    list.textContent = '';
    if (!sorted.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'None yet.';
      list.appendChild(li);
      return;
    }
    for (const it of sorted) {
      const li = document.createElement('li');
      li.className = 'item ' + it.target;
      const head = document.createElement('div');
      const strong = document.createElement('strong');
      strong.textContent = it.target === 'beat' ? 'Beat ' + it.label : it.label.replace(/_/g, ' ');
      head.appendChild(strong);
      const when = document.createElement('span');
      when.className = 'muted';
      const det = Object.entries(it.details || {}).filter(([k]) => k !== 'model_version').map(([k, v]) => k + ' ' + v).join(', ');
      when.textContent = ' ' + new Date(it.t_ns / 1e6).toLocaleTimeString() + (det ? ' · ' + det : '') +
        (it.probs && it.label in it.probs ? ' · p=' + it.probs[it.label].toFixed(2) : '');
      head.appendChild(when);
      li.appendChild(head);
      if (it.snippet && it.snippet.t && it.snippet.t.length) {
        const box = document.createElement('div');
        box.className = 'snippet';
        li.appendChild(box);
        list.appendChild(li);
        MedChain.snippetChart(box, it.snippet);
        continue;
      }
      const wait = document.createElement('div');
      wait.className = 'muted small';
      wait.textContent = it.pending ? 'ECG snippet follows…' : 'No ECG snippet kept.';
      li.appendChild(wait);
      list.appendChild(li);
    }
  }

  function onSnapshot(snap) {
    for (const [kind, s] of Object.entries(snap.streams || {})) {
      const c = chartFor(kind, s.fs, s.data.length);
      if (c) { c.ring.pushTimes(s.t, s.data); c.dirty = true; stats.received[kind] = c.ring.total; }
    }
    onSummary(snap);
    if (snap.status) onStatus(snap.status);
    (snap.flagged || []).forEach(onFlagged);
  }

  function frame() {
    if (!document.hidden) {
      for (const c of Object.values(charts)) {
        if (!c.dirty) continue;
        const data = c.ring.arrays(WINDOW_S);
        c.plot.setData(data);
        c.dirty = false;
        stats.renders++;
        stats.points[c.kind] = data[0].length;
        c.el.dataset.points = String(data[0].length);
      }
    }
    requestAnimationFrame(frame);
  }

  let es = null;
  let hideTimer = null;
  function setState(text) { $('live-state').textContent = 'Live: ' + text; }
  function handler(fn) {
    return (e) => { stats.messages++; try { fn(JSON.parse(e.data)); } catch (err) { console.error('bad live message', err); } };
  }
  function open() {
    es = new EventSource(root.dataset.stream);
    es.onopen = () => { stats.connected = true; setState('connected'); };
    es.onerror = () => {
      stats.connected = false;
      setState(es.readyState === EventSource.CLOSED ? 'stopped (reload the page or log in again)' : 'reconnecting…');
    };
    es.addEventListener('snapshot', handler(onSnapshot));
    es.addEventListener('live', handler(onLive));
    es.addEventListener('pred', handler((p) => { onSummary(p); (p.flagged || []).forEach(onFlagged); }));
    es.addEventListener('status', handler(onStatus));
    es.addEventListener('flagged', handler(onFlagged));
    es.addEventListener('dropped', handler((d) => { stats.dropped += d.count; }));
  }
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) {
      hideTimer = setTimeout(() => { if (es) { es.close(); es = null; setState('paused while hidden'); } }, 30000);
    } else {
      clearTimeout(hideTimer);
      if (!es) open();
    }
  });
  function loadStoredEvents() {
    /* Events recorded before this page (or this server) started; live ones replace them. */
    fetch(root.dataset.events, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then((r) => (r.ok ? r.json() : { events: [] }))
      .then((d) => {
        for (const e of d.events || []) {
          if (items.has(e.event_id)) continue;
          items.set(e.event_id, { item_id: e.event_id, target: 'event', t_ns: e.t_start_ns, label: e.kind,
            details: e.details, probs: {}, snippet: null });
        }
        renderItems();
      })
      .catch(() => {});
  }
  open();
  loadStoredEvents();
  requestAnimationFrame(frame);
})();
