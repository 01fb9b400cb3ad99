/* Label review: draw each flagged item's ECG snippet. */
(function () {
  'use strict';
  function draw() {
    document.querySelectorAll('.snippet[data-snippet]').forEach((el) => {
      try {
        const s = JSON.parse(el.dataset.snippet);
        if (s && s.t && s.t.length) MedChain.snippetChart(el, s);
      } catch (e) {
        el.textContent = 'Snippet unreadable.';
      }
    });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', draw);
  else draw();
})();
