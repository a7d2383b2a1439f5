// Fleetcast dashboard: the little that htmx cannot do by itself.
//
// 1. When the event stream to the dashboard drops, the server cannot push its own "stale"
//    banner, so show a local notice until the stream reopens. `data-live` on <body> tells
//    people (and the browser tests) whether live updates are flowing.
// 2. Close the page's event stream when the page is hidden for navigation. Chrome keeps
//    left pages in its back/forward cache with their EventSource open, and a browser holds
//    only six HTTP/1.1 connections per host: a few clicks through the views would otherwise
//    leave the next page waiting for a connection. A page restored from that cache reloads,
//    so it shows live data again.
(function () {
  "use strict";
  function setLive(open) {
    document.body.dataset.live = open ? "open" : "lost";
    var el = document.getElementById("conn-lost");
    if (el) { el.hidden = open; }
  }
  document.addEventListener("htmx:sseOpen", function () { setLive(true); });
  document.addEventListener("htmx:sseError", function () { setLive(false); });

  var sources = [];
  var create = htmx.createEventSource;
  htmx.createEventSource = function (url) {
    var source = create(url);
    sources.push(source);
    return source;
  };
  window.addEventListener("pagehide", function () {
    sources.forEach(function (s) { s.close(); });
    sources = [];
  });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted) { window.location.reload(); }
  });
})();
