/* The patient's own page: polls the plain-words view every 5 s (no stream slot held, and
   nothing drawn while the page is hidden). */
(function () {
  'use strict';
  const root = document.getElementById('my-heart');
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const state = { updates: 0, last: null };
  window.medchainMine = state;

  function show(v) {
    state.last = v;
    state.updates++;
    $('my-hr').textContent = v.heart_rate_bpm == null ? '–' : String(v.heart_rate_bpm);
    const verdict = $('verdict');
    verdict.textContent = v.rhythm.text;
    verdict.dataset.code = v.rhythm.code;
    $('flagged-count').textContent = String(v.flagged_for_care_team);
    $('my-device').textContent = v.device_online == null ? 'not seen yet' : v.device_online ? 'connected' : 'not connected';
  }

  function poll() {
    if (document.hidden) return;
    fetch(root.dataset.view, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then((r) => {
        if (r.status === 401) { window.location.assign('/patient/login'); return null; }
        return r.ok ? r.json() : null;
      })
      .then((v) => { if (v) show(v); })
      .catch(() => {});
  }
  document.addEventListener('visibilitychange', poll);
  poll();
  setInterval(poll, 5000);
})();
