// The UI's only script (served by us, CSP script-src 'self'): copy buttons and delete confirmations.
"use strict";
document.addEventListener("click", function (ev) {
  var button = ev.target.closest("button[data-copy]");
  if (!button) return;
  var text = button.getAttribute("data-copy");
  var shown = function (label) {
    button.textContent = label;
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { shown("Copied"); }, function () { shown("Copy failed"); });
  } else {  // plain http on a non-loopback address: the clipboard API is absent there
    var area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    shown(document.execCommand("copy") ? "Copied" : "Copy failed");
    area.remove();
  }
});
document.addEventListener("submit", function (ev) {
  var question = ev.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) ev.preventDefault();
});
