// Fleetcast dashboard: the little that htmx cannot do by itself.
// When the event stream to the dashboard drops, the server cannot push its own "stale"
// banner, so show a local notice until the stream reopens. `data-live` on <body> tells
// people (and the browser tests) whether live updates are flowing.
(function () {
  "use strict";
  function setLive(open) {
    document.body.dataset.live = open ? "open" : "lost";
    var el = document.getElementById("conn-lost");
    if (el) { el.hidden = open; }
  }
  document.addEventListener("htmx:sseOpen", function () { setLive(true); });
  document.addEventListener("htmx:sseError", function () { setLive(false); });
})();
