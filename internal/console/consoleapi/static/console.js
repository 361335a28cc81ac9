// fedrisk console: refreshes live regions. The console's
// Content-Security-Policy allows only this file as script (no inline
// script); every page works without it, only without live updates.
//
// An element with data-live="URL" is replaced, every data-live-every
// milliseconds (default 2000), by the fragment the console answers at URL
// (same origin, the session cookie). A fragment that no longer carries
// data-live (the job finished) ends the polling.
(function () {
  "use strict";
  function poll(el) {
    var url = el.getAttribute("data-live");
    var every = parseInt(el.getAttribute("data-live-every"), 10) || 2000;
    var failures = 0;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          var t = document.createElement("template");
          t.innerHTML = html.trim();
          var next = t.content.firstElementChild;
          if (!next) { return; }
          el.replaceWith(next);
          el = next;
          if (next.hasAttribute("data-live")) {
            failures = 0;
            setTimeout(tick, every);
          }
        })
        .catch(function () {
          failures++;
          if (failures < 10) { setTimeout(tick, every * 2); }
        });
    }
    setTimeout(tick, every);
  }
  function start() {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
