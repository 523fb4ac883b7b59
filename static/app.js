// Progressive enhancement only: every page works without this file. It adds a show/hide
// button to password fields and a live strength meter on the password form, which asks the
// portal (POST /password/strength, same origin, session cookie + CSRF header).
(function () {
  'use strict';

  var showText = document.body.getAttribute('data-show') || 'Show';

  function labelText(input) {
    var label = document.querySelector('label[for="' + input.id + '"]');
    return label ? label.textContent.trim() : '';
  }

  function addRevealButton(input) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'reveal';
    button.setAttribute('aria-pressed', 'false');
    button.setAttribute('aria-controls', input.id);
    button.appendChild(document.createTextNode(showText));
    var hidden = document.createElement('span');
    hidden.className = 'visually-hidden';
    hidden.textContent = ' ' + labelText(input);
    button.appendChild(hidden);
    button.addEventListener('click', function () {
      var show = input.type === 'password';
      input.type = show ? 'text' : 'password';
      button.setAttribute('aria-pressed', show ? 'true' : 'false');
    });
    input.insertAdjacentElement('afterend', button);
  }

  // Never submit a password as visible text: browsers may then offer to remember it as such.
  function hideOnSubmit(form) {
    form.addEventListener('submit', function () {
      form.querySelectorAll('button.reveal[aria-pressed="true"]').forEach(function (b) {
        b.click();
      });
    });
  }

  function strengthMeter(form) {
    var url = form.getAttribute('data-strength');
    var input = form.querySelector('#new_password');
    var region = form.querySelector('#strength');
    var text = form.querySelector('#strength-text');
    var tips = form.querySelector('#strength-tips');
    var csrf = form.querySelector('input[name="csrf"]');
    if (!url || !input || !region || !text || !tips || !csrf || !window.fetch) {
      return;
    }
    var timer = null;
    var pending = null;

    function clear() {
      region.hidden = true;
      region.removeAttribute('data-score');
      text.textContent = '';
      tips.textContent = '';
    }

    function show(answer) {
      region.hidden = false;
      region.setAttribute('data-score', String(answer.score));
      region.classList.toggle('ok', answer.acceptable === true);
      text.textContent = answer.summary || '';
      tips.textContent = '';
      (answer.problems || []).concat(answer.feedback || []).forEach(function (line) {
        var li = document.createElement('li');
        li.textContent = line;
        tips.appendChild(li);
      });
    }

    function ask() {
      var value = input.value;
      if (value === '') {
        clear();
        return;
      }
      if (pending) {
        pending.abort();
      }
      pending = new AbortController();
      fetch(url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf.value },
        body: JSON.stringify({ password: value }),
        signal: pending.signal
      }).then(function (response) {
        if (!response.ok) {
          throw new Error('strength check refused');
        }
        return response.json();
      }).then(function (answer) {
        if (input.value === value) {
          show(answer);
        }
      }).catch(function (error) {
        if (!error || error.name !== 'AbortError') {
          clear();
        }
      });
    }

    input.addEventListener('input', function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(ask, 300);
    });
  }

  document.querySelectorAll('.pw input[type="password"]').forEach(addRevealButton);
  document.querySelectorAll('form').forEach(hideOnSubmit);
  document.querySelectorAll('form[data-strength]').forEach(strengthMeter);
})();
