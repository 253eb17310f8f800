// Slipway's only script: htmx settings, the CSRF header, and the source toggle.
// Kept in a file because the Content-Security-Policy forbids inline script.
(function () {
  "use strict";

  function configure() {
    if (!window.htmx) return;
    htmx.config.includeIndicatorStyles = false; // CSP: no injected <style>
    htmx.config.allowEval = false;
    // Swapped fragments never run scripts (the CSP would block inline ones anyway),
    // and no authenticated page is copied into sessionStorage's history cache.
    htmx.config.allowScriptTags = false;
    htmx.config.historyCacheSize = 0;
    htmx.config.selfRequestsOnly = true;
    // Settling copies these attributes; setting "style" from script trips the CSP.
    htmx.config.attributesToSettle = ["class", "width", "height"];
    // Swap 422 (a form re-rendered with its errors); other 4xx/5xx are errors.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "422", swap: true },
      { code: "[45]..", swap: false, error: true },
    ];
    document.addEventListener("htmx:configRequest", function (event) {
      var meta = document.querySelector('meta[name="csrf-token"]');
      if (meta) event.detail.headers["X-CSRFToken"] = meta.content;
    });
  }

  // With JavaScript, show only the fieldset of the chosen source; without it,
  // both stay visible and the server ignores the other one.
  function sourceToggle() {
    var radios = document.querySelectorAll('input[name="source_type"]');
    if (!radios.length) return;
    function apply() {
      var chosen = document.querySelector('input[name="source_type"]:checked');
      document.querySelectorAll("fieldset[data-source]").forEach(function (fs) {
        fs.hidden = chosen && fs.dataset.source !== chosen.value;
      });
    }
    radios.forEach(function (r) { r.addEventListener("change", apply); });
    apply();
  }

  // Inline validation swaps only the message; mark the field itself too.
  function markField(event) {
    var target = event.detail && event.detail.target;
    if (!target || !target.classList || !target.classList.contains("errors")) return;
    var field = target.closest(".field");
    var invalid = target.textContent.trim() !== "";
    if (field) field.classList.toggle("has-error", invalid);
    var input = field && field.querySelector("input, textarea, select");
    if (input) {
      if (invalid) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", target.id);
      } else {
        input.removeAttribute("aria-invalid");
      }
    }
  }

  // Both scripts are deferred and run in order: htmx exists now, and configuring
  // it before DOMContentLoaded stops it from injecting its inline <style> (CSP).
  configure();
  document.addEventListener("htmx:afterSwap", markField);
  document.addEventListener("DOMContentLoaded", sourceToggle);
})();

// Notification channel form: with JavaScript, show only the chosen kind's fields.
(function () {
  "use strict";
  function kindToggle() {
    var select = document.querySelector('select[name="kind"]');
    if (!select) return;
    function apply() {
      var kind = select.value === "email" ? "email" : "webhook";
      document.querySelectorAll("fieldset[data-kind]").forEach(function (fs) {
        fs.hidden = fs.dataset.kind !== kind;
      });
    }
    select.addEventListener("change", apply);
    apply();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", kindToggle);
  } else {
    kindToggle();
  }
})();

// Copy buttons (data-copy-target: the id of the element whose text is copied). Hidden
// in the markup; shown only where the Clipboard API exists (secure contexts).
(function () {
  "use strict";
  function copyButtons() {
    if (!navigator.clipboard) return;
    document.querySelectorAll("button[data-copy-target]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.dataset.copyTarget);
        if (!source) return;
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 2000);
        }, function () {
          button.textContent = "Copy failed";
        });
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", copyButtons);
  } else {
    copyButtons();
  }
})();
