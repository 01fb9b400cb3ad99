/* A patient link carries the access code in the URL fragment (#code=…), which browsers never
   send to a server: fill it into the form, drop it from the address bar, and let the patient
   press the button (no automatic log-in: a link cannot log someone into another person's view
   without them seeing it). */
(function () {
  'use strict';
  const input = document.getElementById('access-code');
  const m = /(?:^#|&)code=([0-9A-Za-z-]{1,64})/.exec(window.location.hash);
  if (!input || !m) return;
  input.value = m[1];
  history.replaceState(null, '', window.location.pathname);
  const button = document.querySelector('#patient-login button[type=submit]');
  if (button) button.focus();
})();
